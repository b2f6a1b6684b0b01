// photon/common/alog.h, alog-stdstring.h and utility.h: the backquote
// format, concatenation, VALUE, DEC/HEX, ERRNO, std::string, IPAddr and
// EndPoint, the line's prologue; levels (set_log_output_level and
// log_output_level agree, an off level does not evaluate its arguments,
// PHOTON_LOG sets the starting level); LOG_ERROR_RETURN / LOG_ERRNO_RETURN
// set errno and return; LOG_EVERY_N / LOG_FIRST_N; logging keeps errno;
// log_output_file; DEFER order and scope, LEN, xrange, align_up,
// round_up_to_exp2.
//
// `alog env LEVEL` checks that PHOTON_LOG (set by the harness) gave LEVEL.
#include <photon/common/alog-stdstring.h>
#include <photon/common/alog.h>
#include <photon/common/utility.h>
#include <photon/net/socket.h>
#include <photon/photon.h>
#include <photon/thread/thread.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"

/// An output keeping the lines it gets.
class capture final : public ILogOutput {
public:
    std::vector<std::string> lines;
    std::vector<int> levels;
    void write(int level, const char* begin, const char* end) override {
        lines.emplace_back(begin, end);
        levels.push_back(level);
    }
    int get_log_file_fd() override { return -1; }
    uint64_t set_throttle(uint64_t t = -1ULL) override { return t; }
    uint64_t get_throttle() override { return -1ULL; }
    void destruct() override {}
    /// The last line's message (after the prologue), without the newline.
    std::string last_message() const {
        const std::string& l = lines.back();
        // date time|LEVEL|th=...|file:line|func:message
        size_t pos = 0;
        for (int i = 0; i < 4; i++) pos = l.find('|', pos) + 1;
        pos = l.find(':', pos) + 1;
        return l.substr(pos, l.size() - pos - 1);
    }
};

static int evaluated = 0;
static int side_effect() { return ++evaluated; }

static int fails_with_return() { LOG_ERROR_RETURN(EINVAL, -7, "bad value `", 3); }
static int fails_with_errno() {
    errno = ENOENT;
    LOG_ERRNO_RETURN(0, -8, "open failed");
}
static int fails_with_new_errno() {
    errno = ENOENT;
    LOG_ERRNO_RETURN(EACCES, -9, "denied");
}

enum class colour { red = 2 };

int main(int argc, char** argv) {
    if (argc == 3 && std::strcmp(argv[1], "env") == 0) {
        const int want = std::atoi(argv[2]);
        CHECK(static_cast<int>(log_output_level) == want, "PHOTON_LOG=%s gave level %u, want %d",
              std::getenv("PHOTON_LOG"), log_output_level, want);
        CHECK(static_cast<int>(default_logger.log_level) == want, "default_logger");
        return 0;
    }
    CHECK_OK(photon::init());
    capture cap;
    set_log_output(&cap);
    set_log_output_level(ALOG_DEBUG);

    SAY("format, concatenation and types");
    LOG_INFO("a=` b=` c=`", 1, "two", 3.5);
    CHECK(cap.last_message() == "a=1 b=two c=3.500", "got '%s'", cap.last_message().c_str());
    LOG_INFO("extra args are appended: ", 1, 2);
    CHECK(cap.last_message() == "extra args are appended: 12", "got '%s'", cap.last_message().c_str());
    const char* dyn = "not a format `";
    LOG_INFO(dyn, 5);
    CHECK(cap.last_message() == "not a format `5", "got '%s'", cap.last_message().c_str());
    int fd = 3;
    std::string name = "x.txt";
    LOG_DEBUG(VALUE(fd), VALUE(name));
    CHECK(cap.last_message() == "[fd=3][name=x.txt]", "got '%s'", cap.last_message().c_str());
    LOG_INFO("` ` ` ` `", DEC(1234567).comma(true), HEX(255), DEC(7).width(3).padding('0'), -42, colour::red);
    CHECK(cap.last_message() == "1,234,567 ff 007 -42 2", "got '%s'", cap.last_message().c_str());
    LOG_INFO("`", ERRNO(ENOENT));
    CHECK(cap.last_message() == "errno=2(" + std::string(std::strerror(ENOENT)) + ")", "got '%s'",
          cap.last_message().c_str());
    photon::net::EndPoint ep(photon::net::IPAddr("127.0.0.1"), 80);
    LOG_INFO("ep=` ip=`", ep, ep.addr);
    CHECK(cap.last_message() == "ep=127.0.0.1:80 ip=127.0.0.1", "got '%s'", cap.last_message().c_str());
    LOG_INFO("`", FP(2.0 / 3).precision(2));
    CHECK(cap.last_message() == "0.67", "got '%s'", cap.last_message().c_str());

    SAY("the prologue: time, level, thread, file:line, function");
    LOG_WARN("w");
    const std::string& l = cap.lines.back();
    CHECK(l.size() > 27 && l[4] == '/' && l[7] == '/' && l[10] == ' ' && l[13] == ':' && l[19] == '.', "'%s'",
          l.c_str());
    CHECK(l.find("|WARN |th=0x") == 26, "'%s'", l.c_str());
    CHECK(l.find("|alog.cpp:") != std::string::npos && l.find("|main:w\n") != std::string::npos, "'%s'", l.c_str());
    CHECK(cap.levels.back() == ALOG_WARN, "level %d", cap.levels.back());

    SAY("levels: set_log_output_level and log_output_level agree; off does not evaluate");
    set_log_output_level(ALOG_WARN);
    CHECK(log_output_level == ALOG_WARN, "log_output_level %u", log_output_level);
    size_t before = cap.lines.size();
    LOG_INFO("hidden `", side_effect());
    LOG_DEBUG("hidden `", side_effect());
    CHECK(cap.lines.size() == before && evaluated == 0, "lines %zu evaluated %d", cap.lines.size(), evaluated);
    LOG_ERROR("shown `", side_effect());
    CHECK(cap.lines.size() == before + 1 && evaluated == 1, "lines %zu evaluated %d", cap.lines.size(), evaluated);
    log_output_level = ALOG_DEBUG;
    CHECK(default_logger.log_level == ALOG_DEBUG, "log_output_level is default_logger's level");

    SAY("LOG_ERROR_RETURN / LOG_ERRNO_RETURN set errno and return");
    errno = 0;
    CHECK(fails_with_return() == -7 && errno == EINVAL, "errno %d", errno);
    CHECK(cap.last_message() == "bad value 3", "got '%s'", cap.last_message().c_str());
    CHECK(fails_with_errno() == -8 && errno == ENOENT, "errno %d", errno);
    CHECK(cap.last_message() == "open failed errno=2(" + std::string(std::strerror(ENOENT)) + ")", "got '%s'",
          cap.last_message().c_str());
    CHECK(fails_with_new_errno() == -9 && errno == EACCES, "errno %d", errno);

    SAY("logging keeps errno");
    errno = EDOM;
    LOG_INFO("x");
    CHECK(errno == EDOM, "errno %d", errno);

    SAY("LOG_EVERY_N, LOG_FIRST_N");
    before = cap.lines.size();
    for (int i = 0; i < 10; i++) LOG_EVERY_N(4, LOG_INFO("every"));
    CHECK(cap.lines.size() == before + 3, "every 4 of 10: %zu", cap.lines.size() - before);
    before = cap.lines.size();
    for (int i = 0; i < 10; i++) LOG_FIRST_N(2, LOG_INFO("first"));
    CHECK(cap.lines.size() == before + 2, "first 2: %zu", cap.lines.size() - before);

    SAY("LOG_AUDIT goes to default_audit_logger (null until set)");
    before = cap.lines.size();
    LOG_AUDIT("audit");
    CHECK(cap.lines.size() == before, "audit went to the default logger");
    default_audit_logger.log_output = &cap;
    LOG_AUDIT("audit `", 1);
    CHECK(cap.lines.size() == before + 1 && cap.lines.back().find("|AUDIT|th=") != std::string::npos &&
              cap.levels.back() == ALOG_AUDIT,
          "'%s'", cap.lines.back().c_str());
    default_audit_logger.log_output = log_output_null;

    SAY("log_output_file writes lines to a file; log_output_file_close returns to stderr");
    char path[] = "/tmp/photon-cpp-alog-XXXXXX";
    const int tmp = ::mkstemp(path);
    CHECK(tmp >= 0, "mkstemp");
    ::close(tmp);
    CHECK_OK(log_output_file(path));
    LOG_INFO("to the file `", 42);
    CHECK_OK(log_output_file_close());
    CHECK(log_output == log_output_stderr, "back to stderr");
    char buf[512] = {0};
    const int in = ::open(path, O_RDONLY);
    CHECK(in >= 0 && ::read(in, buf, sizeof buf - 1) > 0, "read back");
    ::close(in);
    ::unlink(path);
    CHECK(std::strstr(buf, "|INFO |") != nullptr && std::strstr(buf, "to the file 42\n") != nullptr, "file: %s", buf);

    SAY("new_async_log_output queues lines and writes them in batches");
    {
        capture inner;
        ILogOutput* async = new_async_log_output(&inner);
        default_audit_logger.log_output = async;
        for (int i = 0; i < 100; i++) LOG_AUDIT("async `", i);
        for (int i = 0; i < 1000 && inner.lines.empty(); i++) photon::thread_usleep(1000);
        default_audit_logger.log_output = log_output_null;
        async->destruct();  // flushes what is left
        std::string all;
        for (const std::string& x : inner.lines) all += x;
        CHECK(all.find("async 0\n") != std::string::npos && all.find("async 99\n") != std::string::npos,
              "all lines arrived (%zu batches)", inner.lines.size());
    }

    SAY("DEFER runs at scope end, in reverse order");
    std::string order;
    {
        DEFER(order += "a");
        DEFER(order += "b");
        order += "c";
    }
    CHECK(order == "cba", "order %s", order.c_str());
    int released = 0;
    WITH_Release(int* p = &released, ++*p) { CHECK(released == 0, "not yet"); }
    CHECK(released == 1, "WITH_Release released %d", released);

    SAY("LEN, xrange, align_up, round_up_to_exp2");
    int arr[7];
    (void)arr;
    CHECK(LEN(arr) == 7, "LEN");
    int sum = 0;
    for (auto i : xrange(2, 8)) sum += i;
    CHECK(sum == 2 + 3 + 4 + 5 + 6 + 7, "xrange sum %d", sum);
    sum = 0;
    for (auto i : xrange(0, 10, 3)) sum += i;
    CHECK(sum == 0 + 3 + 6 + 9, "xrange step sum %d", sum);
    CHECK(align_up(4097, 4096) == 8192 && align_down(4097, 4096) == 4096, "align");
    CHECK(round_up_to_exp2(5) == 8 && round_up_to_exp2(8) == 8 && round_up_to_exp2(0) == 1, "round_up_to_exp2");
    CHECK(is_power_of_2(64) && !is_power_of_2(65), "is_power_of_2");

    set_log_output(log_output_stderr);
    CHECK_OK(photon::fini());
    std::printf("alog: all checks passed\n");
    return 0;
}
