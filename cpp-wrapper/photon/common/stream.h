// photon/common/stream.h: photon::IStream, a byte stream, as PhotonLibOS
// spells it (sockets and files are streams).
#ifndef PHOTON_CPP_COMMON_STREAM_H
#define PHOTON_CPP_COMMON_STREAM_H

#include <photon/common/object.h>

#include <cstddef>
#include <sys/types.h>
#include <sys/uio.h>

/// What shutdown() closes (as PhotonLibOS's, at global scope): the values
/// are SHUT_RD, SHUT_WR and SHUT_RDWR.
enum class ShutdownHow : int { Read = 0, Write = 1, ReadWrite = 2 };

namespace photon {

using ::ShutdownHow;

/// A byte stream. read()/write() transfer the whole count unless the
/// stream ends or fails (sockets: see ISocketStream::recv/send for the
/// calls that wait once); each returns the count, or -1 with errno.
class IStream : public Object {
public:
    /// Closes the stream (the destructor does too). 0, or -1 with errno.
    virtual int close() = 0;
    virtual ssize_t read(void* buf, size_t count) = 0;
    virtual ssize_t readv(const struct iovec* iov, int iovcnt) = 0;
    virtual ssize_t write(const void* buf, size_t count) = 0;
    virtual ssize_t writev(const struct iovec* iov, int iovcnt) = 0;
    /// Shuts down reading, writing or both (sockets); 0 where a stream has
    /// nothing to shut down.
    virtual int shutdown(ShutdownHow how) {
        (void)how;
        return 0;
    }
};

}  // namespace photon

#endif  // PHOTON_CPP_COMMON_STREAM_H
