// photon/fs/filesystem.h: photon::fs::IFile, a file, as PhotonLibOS spells
// it. (PhotonLibOS's IFileSystem is not part of this wrapper.)
#ifndef PHOTON_CPP_FS_FILESYSTEM_H
#define PHOTON_CPP_FS_FILESYSTEM_H

#include <photon/common/object.h>
#include <photon/common/stream.h>

#include <sys/statfs.h>
#include <sys/statvfs.h>

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

namespace photon {
namespace fs {

/// A file. Each call is the POSIX call of the same name (returning what it
/// returns, -1 with errno on failure), made as a photon thread: it never
/// stalls the vcpu (io_uring operations, or an offload pool under epoll).
/// read()/write() use and move the file offset; pread()/pwrite() do not.
class IFile : public IStream {
public:
    virtual ssize_t pread(void* buf, size_t count, off_t offset) = 0;
    virtual ssize_t preadv(const struct iovec* iov, int iovcnt, off_t offset) = 0;
    virtual ssize_t pwrite(const void* buf, size_t count, off_t offset) = 0;
    virtual ssize_t pwritev(const struct iovec* iov, int iovcnt, off_t offset) = 0;
    virtual off_t lseek(off_t offset, int whence) = 0;
    virtual int fsync() = 0;
    virtual int fdatasync() = 0;
    virtual int fstat(struct stat* buf) = 0;
    virtual int ftruncate(off_t length) = 0;
    virtual int fallocate(int mode, off_t offset, off_t len) = 0;
    /// The file's fd (-1 once closed).
    virtual int get_underlay_fd() = 0;
};

/// A file system: paths in, IFile objects out (PhotonLibOS's IFileSystem,
/// without directory listing). Each call returns 0 (or a count), or -1
/// with errno, as the POSIX call of the same name.
class IFileSystem : public Object {
public:
    virtual IFile* open(const char* pathname, int flags) = 0;
    virtual IFile* open(const char* pathname, int flags, mode_t mode) = 0;
    virtual IFile* creat(const char* pathname, mode_t mode) = 0;
    virtual int mkdir(const char* pathname, mode_t mode) = 0;
    virtual int rmdir(const char* pathname) = 0;
    virtual int symlink(const char* oldname, const char* newname) = 0;
    virtual ssize_t readlink(const char* path, char* buf, size_t bufsiz) = 0;
    virtual int link(const char* oldname, const char* newname) = 0;
    virtual int rename(const char* oldname, const char* newname) = 0;
    virtual int unlink(const char* filename) = 0;
    virtual int chmod(const char* pathname, mode_t mode) = 0;
    virtual int chown(const char* pathname, uid_t owner, gid_t group) = 0;
    virtual int lchown(const char* pathname, uid_t owner, gid_t group) = 0;
    virtual int statfs(const char* path, struct statfs* buf) = 0;
    virtual int statvfs(const char* path, struct statvfs* buf) = 0;
    virtual int stat(const char* path, struct stat* buf) = 0;
    virtual int lstat(const char* path, struct stat* buf) = 0;
    virtual int access(const char* pathname, int mode) = 0;
    virtual int truncate(const char* path, off_t length) = 0;
    virtual int syncfs() = 0;
};

}  // namespace fs
}  // namespace photon

#endif  // PHOTON_CPP_FS_FILESYSTEM_H
