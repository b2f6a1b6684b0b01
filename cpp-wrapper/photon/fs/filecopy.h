// photon/fs/filecopy.h: fs::filecopy, copying one IFile into another with
// pread / pwrite in blocks (a failed block is retried up to `retry_limit`
// times), as PhotonLibOS's.
#ifndef PHOTON_CPP_FS_FILECOPY_H
#define PHOTON_CPP_FS_FILECOPY_H

#include <photon/fs/filesystem.h>

#include <cerrno>
#include <cstdlib>
#include <sys/types.h>

namespace photon {
namespace fs {

/// Copies `infile` from offset 0 to its end into `outfile` at the same
/// offsets, `bs` bytes at a time (a 4 KiB-aligned buffer, so O_DIRECT
/// files work). Returns the bytes copied, or -1 with errno.
inline ssize_t filecopy(IFile* infile, IFile* outfile, size_t bs = 65536, int retry_limit = 5) {
    if (infile == nullptr || outfile == nullptr || bs == 0) {
        errno = EINVAL;
        return -1;
    }
    void* buf = nullptr;
    if (::posix_memalign(&buf, 4096, bs) != 0) {
        errno = ENOMEM;
        return -1;
    }
    off_t offset = 0;
    ssize_t result = 0;
    for (;;) {
        ssize_t got = -1;
        for (int tries = 0; got < 0 && tries <= retry_limit; ++tries) got = infile->pread(buf, bs, offset);
        if (got < 0) {
            result = -1;
            break;
        }
        if (got == 0) break;
        ssize_t put = -1;
        for (int tries = 0; put != got && tries <= retry_limit; ++tries)
            put = outfile->pwrite(buf, static_cast<size_t>(got), offset);
        if (put != got) {
            if (put >= 0) errno = EIO;
            result = -1;
            break;
        }
        offset += got;
        result = offset;
        if (static_cast<size_t>(got) < bs) {
            // A short read may be the end; the next pread tells.
            continue;
        }
    }
    const int e = errno;
    std::free(buf);
    errno = e;
    return result;
}

}  // namespace fs
}  // namespace photon

#endif  // PHOTON_CPP_FS_FILECOPY_H
