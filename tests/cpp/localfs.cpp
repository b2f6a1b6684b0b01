// photon/fs/localfs.h: open_localfile_adaptor / new_localfile_adaptor and
// IFile's calls: write/read (moving the offset), pwrite/pread,
// pwritev/preadv, writev/readv, lseek, fstat, ftruncate, fallocate,
// fsync/fdatasync, close; errors; many threads reading at once.
#include <photon/fs/localfs.h>
#include <photon/photon.h>
#include <photon/thread/thread11.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "check.h"

using photon::fs::IFile;

int main() {
    CHECK_OK(photon::init());
    char path[64];
    std::snprintf(path, sizeof path, "/tmp/photon-cpp-localfs-%d", (int)getpid());

    SAY("open_localfile_adaptor of a missing file: nullptr with ENOENT");
    errno = 0;
    CHECK(photon::fs::open_localfile_adaptor("/nonexistent/dir/file", O_RDONLY) == nullptr && errno == ENOENT,
          "errno %d", errno);

    SAY("write / read move the offset; lseek moves it back");
    std::unique_ptr<IFile> f(photon::fs::open_localfile_adaptor(path, O_RDWR | O_CREAT | O_TRUNC, 0600));
    CHECK(f != nullptr, "open: errno %d", errno);
    CHECK(f->write("hello ", 6) == 6 && f->write("world", 5) == 5, "write");
    CHECK(f->lseek(0, SEEK_CUR) == 11, "offset after writes");
    CHECK(f->lseek(6, SEEK_SET) == 6, "lseek");
    char buf[64] = {0};
    CHECK(f->read(buf, 5) == 5 && std::string(buf, 5) == "world", "read '%s'", buf);
    CHECK(f->read(buf, 5) == 0, "EOF");

    SAY("pwrite / pread at offsets, without moving the offset");
    CHECK(f->pwrite("HELLO", 5, 0) == 5, "pwrite");
    CHECK(f->pread(buf, 11, 0) == 11 && std::string(buf, 11) == "HELLO world", "pread '%s'", buf);
    CHECK(f->lseek(0, SEEK_CUR) == 11, "offset unchanged");
    CHECK(f->pread(buf, 10, 100) == 0, "pread past EOF");

    SAY("pwritev / preadv, writev / readv");
    char a[2] = {'1', '2'}, b[3] = {'3', '4', '5'};
    struct iovec wv[2] = {{a, 2}, {b, 3}};
    CHECK(f->pwritev(wv, 2, 20) == 5, "pwritev");
    char x[3], y[2];
    struct iovec rv[2] = {{x, 3}, {y, 2}};
    CHECK(f->preadv(rv, 2, 20) == 5 && std::string(x, 3) == "123" && std::string(y, 2) == "45", "preadv");
    CHECK(f->lseek(30, SEEK_SET) == 30 && f->writev(wv, 2) == 5, "writev");
    CHECK(f->lseek(30, SEEK_SET) == 30 && f->readv(rv, 2) == 5 && std::string(x, 3) == "123", "readv");

    SAY("fstat, ftruncate, fallocate, fsync, fdatasync");
    struct stat st;
    CHECK_OK(f->fstat(&st));
    CHECK(st.st_size == 35, "size %ld", (long)st.st_size);
    CHECK_OK(f->ftruncate(11));
    CHECK_OK(f->fstat(&st));
    CHECK(st.st_size == 11, "size after ftruncate %ld", (long)st.st_size);
    const int fa = f->fallocate(0, 0, 4096);
    CHECK(fa == 0 || errno == EOPNOTSUPP, "fallocate: errno %d", errno);
    CHECK_OK(f->fsync());
    CHECK_OK(f->fdatasync());

    SAY("8 threads pread the file at once");
    std::vector<char> block(64 * 1024);
    for (size_t i = 0; i < block.size(); i++) block[i] = static_cast<char>(i % 251);
    CHECK(f->pwrite(block.data(), block.size(), 0) == (ssize_t)block.size(), "pwrite block");
    int good = 0;
    std::vector<photon::join_handle*> readers;
    for (int t = 0; t < 8; t++) {
        readers.push_back(photon::thread_enable_join(photon::thread_create11([&, t] {
            std::vector<char> mine(8 * 1024);
            const off_t off = static_cast<off_t>(t) * 8 * 1024;
            if (f->pread(mine.data(), mine.size(), off) == (ssize_t)mine.size() &&
                std::equal(mine.begin(), mine.end(), block.begin() + off))
                good++;
        })));
    }
    for (auto r : readers) photon::thread_join(r);
    CHECK(good == 8, "good %d", good);

    SAY("close; calls after close fail with EBADF");
    CHECK(f->get_underlay_fd() >= 0, "fd");
    CHECK_OK(f->close());
    CHECK(f->get_underlay_fd() == -1, "closed");
    CHECK_ERRNO(f->pread(buf, 1, 0), EBADF);
    CHECK_OK(f->close());
    f.reset();

    SAY("new_localfile_adaptor adopts an fd");
    const int fd = photon_open(path, O_RDONLY, 0);
    CHECK(fd >= 0, "photon_open");
    std::unique_ptr<IFile> g(photon::fs::new_localfile_adaptor(fd));
    CHECK(g && g->pread(buf, 4, 0) == 4 && std::equal(buf, buf + 4, block.begin()), "adopted fd reads");
    g.reset();
    CHECK(::fcntl(fd, F_GETFD) == -1 && errno == EBADF, "deleting the IFile closed the fd");
    errno = 0;
    CHECK(photon::fs::new_localfile_adaptor(-1) == nullptr && errno == EBADF, "negative fd");

    ::unlink(path);
    CHECK_OK(photon::fini());
    std::printf("localfs: all checks passed\n");
    return 0;
}
