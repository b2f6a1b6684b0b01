// sys/socket.h: PhotonLibOS's include/ directory shadows <sys/socket.h> so that
// code built against it also sees POSIX-signature socket calls in namespace
// photon::net (programs call photon::net::setsockopt(fd, ...) on a raw
// descriptor). With -I cpp-wrapper this header takes that place: it includes
// the system header first, then declares the same calls over libphoton's C API,
// which also serves libphoton's userspace-stack (unet) descriptors.
#ifndef PHOTON_CPP_SYS_SOCKET_H
#define PHOTON_CPP_SYS_SOCKET_H

// include_next is what shadowing a system header takes; the pragma keeps
// -pedantic quiet about it (as for any header under /usr/include).
#pragma GCC system_header
#include_next <sys/socket.h>

#ifdef __cplusplus
// libphoton's C API (as include/photon.h declares it; declared here too
// because photon.h itself includes <sys/socket.h>, so this file can be read
// before the rest of photon.h).
extern "C" {
int photon_setsockopt(int fd, int level, int optname, const void* optval, socklen_t optlen);
int photon_getsockopt(int fd, int level, int optname, void* optval, socklen_t* optlen);
int photon_getsockname(int fd, struct sockaddr* addr, socklen_t* addrlen);
int photon_getpeername(int fd, struct sockaddr* addr, socklen_t* addrlen);
}

namespace photon {
namespace net {

// Each returns what the POSIX call returns: 0, or -1 with errno set.
inline int setsockopt(int fd, int level, int optname, const void* optval, socklen_t optlen) {
    return photon_setsockopt(fd, level, optname, optval, optlen);
}
inline int getsockopt(int fd, int level, int optname, void* optval, socklen_t* optlen) {
    return photon_getsockopt(fd, level, optname, optval, optlen);
}
inline int getsockname(int fd, struct sockaddr* addr, socklen_t* addrlen) {
    return photon_getsockname(fd, addr, addrlen);
}
inline int getpeername(int fd, struct sockaddr* addr, socklen_t* addrlen) {
    return photon_getpeername(fd, addr, addrlen);
}

}  // namespace net
}  // namespace photon
#endif  // __cplusplus

#endif  // PHOTON_CPP_SYS_SOCKET_H
