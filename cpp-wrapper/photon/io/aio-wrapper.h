// photon/io/aio-wrapper.h: PhotonLibOS's libaio / POSIX AIO file calls.
// libphoton picks the file I/O path itself (io_uring where the kernel has
// it, else its offload pool), so the init / fini calls return 0 and every
// call here is libphoton's photon_pread / photon_pwrite / ..., which block
// only the calling photon thread.
#ifndef PHOTON_CPP_IO_AIO_WRAPPER_H
#define PHOTON_CPP_IO_AIO_WRAPPER_H

#include <photon.h>

#include <sys/types.h>
#include <sys/uio.h>

namespace photon {

inline int libaio_wrapper_init(int iodepth = 32) {
    (void)iodepth;
    return 0;
}
inline int libaio_wrapper_fini() { return 0; }
inline ssize_t libaio_pread(int fd, void* buf, size_t count, off_t offset) {
    return photon_pread(fd, buf, count, offset);
}
inline ssize_t libaio_preadv(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
    return photon_preadv(fd, iov, iovcnt, offset);
}
inline ssize_t libaio_pwrite(int fd, const void* buf, size_t count, off_t offset) {
    return photon_pwrite(fd, buf, count, offset);
}
inline ssize_t libaio_pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
    return photon_pwritev(fd, iov, iovcnt, offset);
}
inline int libaio_fsync(int fd) { return photon_fsync(fd); }
inline ssize_t posixaio_pread(int fd, void* buf, size_t count, off_t offset) {
    return photon_pread(fd, buf, count, offset);
}
inline ssize_t posixaio_pwrite(int fd, const void* buf, size_t count, off_t offset) {
    return photon_pwrite(fd, buf, count, offset);
}
inline int posixaio_fsync(int fd) { return photon_fsync(fd); }
inline int posixaio_fdatasync(int fd) { return photon_fdatasync(fd); }

/// The calls as static members, for code templated on the I/O flavour.
struct libaio {
    static ssize_t pread(int fd, void* buf, size_t count, off_t offset) { return libaio_pread(fd, buf, count, offset); }
    static ssize_t preadv(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
        return libaio_preadv(fd, iov, iovcnt, offset);
    }
    static ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
        return libaio_pwrite(fd, buf, count, offset);
    }
    static ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
        return libaio_pwritev(fd, iov, iovcnt, offset);
    }
    static int fsync(int fd) { return libaio_fsync(fd); }
};
struct posixaio {
    static ssize_t pread(int fd, void* buf, size_t count, off_t offset) { return posixaio_pread(fd, buf, count, offset); }
    static ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
        return posixaio_pwrite(fd, buf, count, offset);
    }
    static int fsync(int fd) { return posixaio_fsync(fd); }
    static int fdatasync(int fd) { return posixaio_fdatasync(fd); }
};

}  // namespace photon

#endif  // PHOTON_CPP_IO_AIO_WRAPPER_H
