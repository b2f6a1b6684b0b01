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

}  // namespace fs
}  // namespace photon

#endif  // PHOTON_CPP_FS_LOCALFS_H
