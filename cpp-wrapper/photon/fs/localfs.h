// photon/fs/localfs.h: local files as photon::fs::IFile, as PhotonLibOS
// spells it.
//
//     photon::fs::IFile* f = photon::fs::open_localfile_adaptor("/tmp/x", O_RDWR | O_CREAT, 0644);
//     f->pwrite("hello", 5, 0);
//     delete f;                              // closes it
#ifndef PHOTON_CPP_FS_LOCALFS_H
#define PHOTON_CPP_FS_LOCALFS_H

#include <photon.h>
#include <photon/fs/filesystem.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <new>

namespace photon {
namespace fs {

/// PhotonLibOS's I/O engine choices for local files. Accepted and ignored:
/// libphoton picks io_uring file operations where the kernel has them, else
/// an offload pool.
constexpr int ioengine_psync = 0;
constexpr int ioengine_libaio = 1;
constexpr int ioengine_posixaio = 2;
constexpr int ioengine_iouring = 3;

namespace detail {

/// An fd as an IFile; closes it (photon_close) when deleted.
class LocalFile final : public IFile {
public:
    explicit LocalFile(int fd) noexcept : m_fd(fd) {}
    LocalFile(const LocalFile&) = delete;
    LocalFile& operator=(const LocalFile&) = delete;
    ~LocalFile() override { close(); }

    int close() override {
        if (m_fd < 0) return 0;
        const int fd = m_fd;
        m_fd = -1;
        return photon_close(fd);
    }
    ssize_t read(void* buf, size_t count) override { return photon_read(m_fd, buf, count, PHOTON_FOREVER); }
    ssize_t readv(const struct iovec* iov, int iovcnt) override {
        return photon_readv(m_fd, iov, iovcnt, PHOTON_FOREVER);
    }
    ssize_t write(const void* buf, size_t count) override { return photon_write(m_fd, buf, count, PHOTON_FOREVER); }
    ssize_t writev(const struct iovec* iov, int iovcnt) override {
        return photon_writev(m_fd, iov, iovcnt, PHOTON_FOREVER);
    }
    ssize_t pread(void* buf, size_t count, off_t offset) override { return photon_pread(m_fd, buf, count, offset); }
    ssize_t preadv(const struct iovec* iov, int iovcnt, off_t offset) override {
        return photon_preadv(m_fd, iov, iovcnt, offset);
    }
    ssize_t pwrite(const void* buf, size_t count, off_t offset) override {
        return photon_pwrite(m_fd, buf, count, offset);
    }
    ssize_t pwritev(const struct iovec* iov, int iovcnt, off_t offset) override {
        return photon_pwritev(m_fd, iov, iovcnt, offset);
    }
    /// lseek(2) itself: it only moves the offset, it never blocks.
    off_t lseek(off_t offset, int whence) override { return ::lseek(m_fd, offset, whence); }
    int fsync() override { return photon_fsync(m_fd); }
    int fdatasync() override { return photon_fdatasync(m_fd); }
    int fstat(struct stat* buf) override { return photon_fstat(m_fd, buf); }
    int ftruncate(off_t length) override { return photon_ftruncate(m_fd, length); }
    int fallocate(int mode, off_t offset, off_t len) override { return photon_fallocate(m_fd, mode, offset, len); }
    int get_underlay_fd() override { return m_fd; }

private:
    int m_fd;
};

}  // namespace detail

/// Opens `filename` (open(2) flags and mode) as an IFile, or nullptr with
/// errno. Delete the file to close it.
inline IFile* open_localfile_adaptor(const char* filename, int flags, mode_t mode = 0644, int io_engine_type = 0) {
    (void)io_engine_type;
    const int fd = photon_open(filename, flags, mode);
    if (fd < 0) return nullptr;
    IFile* file = new (std::nothrow) detail::LocalFile(fd);
    if (file == nullptr) {
        photon_close(fd);
        errno = ENOMEM;
    }
    return file;
}

/// Wraps an open fd as an IFile, which then owns it (closes it when
/// deleted); nullptr with EBADF for a negative fd.
inline IFile* new_localfile_adaptor(int fd, int io_engine_type = 0) {
    (void)io_engine_type;
    if (fd < 0) {
        errno = EBADF;
        return nullptr;
    }
    IFile* file = new (std::nothrow) detail::LocalFile(fd);
    if (file == nullptr) errno = ENOMEM;
    return file;
}


namespace detail {
/// The local file system under a root directory (relative paths are taken
/// from the root; absolute ones too, as PhotonLibOS's adaptor does with a
/// root of "/"). Opens and data calls go through libphoton; metadata calls
/// are the plain system calls.
class LocalFileSystem final : public IFileSystem {
public:
    explicit LocalFileSystem(const char* root) : m_root(root != nullptr ? root : "") {
        if (!m_root.empty() && m_root.back() != '/') m_root += '/';
    }
    IFile* open(const char* pathname, int flags) override { return open(pathname, flags, 0644); }
    IFile* open(const char* pathname, int flags, mode_t mode) override {
        return open_localfile_adaptor(path(pathname).c_str(), flags, mode);
    }
    IFile* creat(const char* pathname, mode_t mode) override {
        return open(pathname, O_CREAT | O_WRONLY | O_TRUNC, mode);
    }
    int mkdir(const char* p, mode_t mode) override { return photon_mkdir(path(p).c_str(), mode); }
    int rmdir(const char* p) override { return ::rmdir(path(p).c_str()); }
    int symlink(const char* oldname, const char* newname) override {
        return ::symlink(oldname, path(newname).c_str());
    }
    ssize_t readlink(const char* p, char* buf, size_t bufsiz) override { return ::readlink(path(p).c_str(), buf, bufsiz); }
    int link(const char* oldname, const char* newname) override {
        return ::link(path(oldname).c_str(), path(newname).c_str());
    }
    int rename(const char* oldname, const char* newname) override {
        return photon_rename(path(oldname).c_str(), path(newname).c_str());
    }
    int unlink(const char* p) override { return photon_unlink(path(p).c_str()); }
    int chmod(const char* p, mode_t mode) override { return ::chmod(path(p).c_str(), mode); }
    int chown(const char* p, uid_t owner, gid_t group) override { return ::chown(path(p).c_str(), owner, group); }
    int lchown(const char* p, uid_t owner, gid_t group) override { return ::lchown(path(p).c_str(), owner, group); }
    int statfs(const char* p, struct statfs* buf) override { return ::statfs(path(p).c_str(), buf); }
    int statvfs(const char* p, struct statvfs* buf) override { return ::statvfs(path(p).c_str(), buf); }
    int stat(const char* p, struct stat* buf) override { return ::stat(path(p).c_str(), buf); }
    int lstat(const char* p, struct stat* buf) override { return ::lstat(path(p).c_str(), buf); }
    int access(const char* p, int mode) override { return ::access(path(p).c_str(), mode); }
    int truncate(const char* p, off_t length) override { return ::truncate(path(p).c_str(), length); }
    int syncfs() override {
        const int fd = ::open(m_root.empty() ? "." : m_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) return -1;
        const int r = ::syncfs(fd);
        const int e = errno;
        ::close(fd);
        errno = e;
        return r;
    }

private:
    std::string path(const char* p) const {
        if (p == nullptr) return m_root;
        while (*p == '/' && !m_root.empty()) ++p;
        return m_root + p;
    }
    std::string m_root;
};
}  // namespace detail

/// The local file system rooted at `root_path` (nullptr: the process's
/// view, paths as given). `io_engine_type` is ignored (libphoton picks
/// io_uring or its offload pool). Delete it when done.
inline IFileSystem* new_localfs_adaptor(const char* root_path = nullptr, int io_engine_type = 0) {
    (void)io_engine_type;
    IFileSystem* fs = new (std::nothrow) detail::LocalFileSystem(root_path);
    if (fs == nullptr) errno = ENOMEM;
    return fs;
}

}  // namespace fs
}  // namespace photon

#endif  // PHOTON_CPP_FS_LOCALFS_H
