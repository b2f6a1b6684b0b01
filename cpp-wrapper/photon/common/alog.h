// photon/common/alog.h: PhotonLibOS's logging macros, header-only.
//
//     LOG_INFO("connected to ` in ` us", peer, elapsed);   // ` is a placeholder
//     LOG_DEBUG(VALUE(fd), VALUE(n));                      // [fd=3][n=12]
//     if (fd < 0) LOG_ERRNO_RETURN(0, -1, "open(`) failed", path);
//
// A string literal first argument is a format whose backquotes take the
// following arguments in turn (arguments left over are appended); any other
// first argument starts a plain concatenation. Types print through
// `LogBuffer& operator<<(LogBuffer&, const T&)`, which a program may define
// for its own types (alog-stdstring.h adds std::string).
//
// Levels, as PhotonLibOS numbers them: ALOG_DEBUG 0, INFO 1, WARN 2, ERROR 3,
// FATAL 4, TEMP 5, AUDIT 6. A line is written when its level is >=
// `log_output_level` (set_log_output_level() sets it). With a level off, a
// LOG_* statement costs one load and one compare: its arguments are not even
// evaluated.
//
// libphoton's conventions: lines go to standard error by raw write(2) (never
// through a hooked libc write, so logging never switches threads), and the
// starting level follows `PHOTON_LOG` as libphoton's own logger does
// (error|warn|info|debug|trace, or off); without PHOTON_LOG it is
// PhotonLibOS's default, ALOG_DEBUG (everything). A line reads
// `2026/08/06 12:00:00.123456|INFO |th=0x...|file.cpp:42|func:message`
// (UTC), as PhotonLibOS writes it.
#ifndef PHOTON_CPP_COMMON_ALOG_H
#define PHOTON_CPP_COMMON_ALOG_H

#include <photon.h>
#include <photon/common/utility.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <tuple>
#include <type_traits>
#include <unistd.h>
#include <utility>

#define ALOG_DEBUG 0
#define ALOG_INFO 1
#define ALOG_WARN 2
#define ALOG_ERROR 3
#define ALOG_FATAL 4
#define ALOG_TEMP 5
#define ALOG_AUDIT 6

/// The most one log line holds (longer lines are cut).
#define LOG_BUFFER_SIZE 4096

/// Where log lines go. Outputs are destroyed with destruct().
class ILogOutput {
protected:
    ~ILogOutput() = default;

public:
    /// Writes one line, [begin, end), which ends with '\n'.
    virtual void write(int level, const char* begin, const char* end) = 0;
    /// The file descriptor written to, or -1.
    virtual int get_log_file_fd() = 0;
    /// Lines per second allowed (-1ULL: no limit); returns the new value.
    virtual uint64_t set_throttle(uint64_t t = -1ULL) = 0;
    virtual uint64_t get_throttle() = 0;
    virtual void destruct() = 0;
    virtual int set_level_color(int, unsigned char) { return 0; }
};

/// A logger: an output and the lowest level it writes.
struct ALogLogger {
    ILogOutput* log_output;
    uint32_t log_level;
};

namespace photon_alog_detail {

/// write(2) of the whole buffer, by raw syscall (see the top of the file).
inline void write_all(int fd, const char* p, const char* end) noexcept {
    while (p < end) {
        const long n = ::syscall(SYS_write, fd, p, static_cast<size_t>(end - p));
        if (n > 0) {
            p += n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return;
        }
    }
}

/// An output writing to a file descriptor (closed by destruct() if owned).
class fd_output final : public ILogOutput {
public:
    constexpr fd_output(int fd, bool owned) noexcept : m_fd(fd), m_owned(owned) {}
    void write(int, const char* begin, const char* end) override {
        const int saved = errno;
        write_all(m_fd, begin, end);
        errno = saved;
    }
    int get_log_file_fd() override { return m_fd; }
    uint64_t set_throttle(uint64_t t = -1ULL) override { return m_throttle = t; }
    uint64_t get_throttle() override { return m_throttle; }
    void destruct() override {
        if (m_owned) {
            ::close(m_fd);
            delete this;
        }
    }

private:
    int m_fd;
    bool m_owned;
    uint64_t m_throttle = -1ULL;
};

/// An output writing nothing.
class null_output final : public ILogOutput {
public:
    constexpr null_output() noexcept {}
    void write(int, const char*, const char*) override {}
    int get_log_file_fd() override { return -1; }
    uint64_t set_throttle(uint64_t t = -1ULL) override { return t; }
    uint64_t get_throttle() override { return -1ULL; }
    void destruct() override {}
};

/// The level `PHOTON_LOG` names (libphoton's logger's variable), or -1.
inline int level_from_env() noexcept {
    const char* v = std::getenv("PHOTON_LOG");
    if (v == nullptr || *v == '\0') return -1;
    // env_logger syntax allows "target=level,..."; the last level word wins.
    int level = -1;
    static const struct {
        const char* word;
        int level;
    } words[] = {{"trace", ALOG_DEBUG}, {"debug", ALOG_DEBUG}, {"info", ALOG_INFO},
                 {"warn", ALOG_WARN},   {"error", ALOG_ERROR}, {"off", ALOG_AUDIT + 1}};
    for (const auto& w : words) {
        if (std::strstr(v, w.word) != nullptr) level = w.level;
    }
    return level;
}

/// The process-wide logging state, one copy for the whole program (static
/// members of a class template are merged across translation units).
template <class = void>
struct globals {
    static fd_output stderr_out, stdout_out;
    static null_output null_out;
    static ALogLogger logger, audit_logger;
    static ILogOutput* file_out;
    static const bool env_applied;
};
template <class T>
fd_output globals<T>::stderr_out{2, false};
template <class T>
fd_output globals<T>::stdout_out{1, false};
template <class T>
null_output globals<T>::null_out{};
template <class T>
ALogLogger globals<T>::logger{&globals<T>::stderr_out, ALOG_DEBUG};
template <class T>
ALogLogger globals<T>::audit_logger{&globals<T>::null_out, ALOG_AUDIT};
template <class T>
ILogOutput* globals<T>::file_out = nullptr;
template <class T>
const bool globals<T>::env_applied = [] {
    const int l = level_from_env();
    if (l >= 0) globals<T>::logger.log_level = static_cast<uint32_t>(l);
    return true;
}();
}  // namespace photon_alog_detail

// Odr-uses env_applied, so that every program reads PHOTON_LOG at start-up.
static const bool photon_alog_env_applied_ __attribute__((unused)) = photon_alog_detail::globals<>::env_applied;

/// The logger LOG_DEBUG ... LOG_TEMP write to.
static ALogLogger& default_logger __attribute__((unused)) = photon_alog_detail::globals<>::logger;
/// The logger LOG_AUDIT writes to (its output is log_output_null until set).
static ALogLogger& default_audit_logger __attribute__((unused)) = photon_alog_detail::globals<>::audit_logger;
/// The lowest level written (default_logger's).
static uint32_t& log_output_level __attribute__((unused)) = photon_alog_detail::globals<>::logger.log_level;
/// default_logger's output.
static ILogOutput*& log_output __attribute__((unused)) = photon_alog_detail::globals<>::logger.log_output;

static ILogOutput* const log_output_null __attribute__((unused)) = &photon_alog_detail::globals<>::null_out;
static ILogOutput* const log_output_stderr __attribute__((unused)) = &photon_alog_detail::globals<>::stderr_out;
static ILogOutput* const log_output_stdout __attribute__((unused)) = &photon_alog_detail::globals<>::stdout_out;

inline void set_log_output(ILogOutput* output) { default_logger.log_output = output; }
inline void set_log_output_level(int l) { default_logger.log_level = static_cast<uint32_t>(l); }
inline int get_log_file_fd() { return default_logger.log_output->get_log_file_fd(); }

/// A new output appending to the file `fn` (created 0644). Rotation is not
/// supported: `rotate_limit` and `max_log_files` are ignored.
inline ILogOutput* new_log_output_file(const char* fn, uint64_t rotate_limit = UINT64_MAX, int max_log_files = 10,
                                       uint64_t throttle = -1ULL) {
    (void)rotate_limit;
    (void)max_log_files;
    const int fd = ::open(fn, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return nullptr;
    ILogOutput* out = new photon_alog_detail::fd_output(fd, true);
    out->set_throttle(throttle);
    return out;
}
/// A new output writing to `fd` (which it then owns).
inline ILogOutput* new_log_output_file(int fd, uint64_t throttle = -1ULL) {
    ILogOutput* out = new photon_alog_detail::fd_output(fd, true);
    out->set_throttle(throttle);
    return out;
}
/// Closes the file log_output_file() opened; logging returns to stderr.
inline int log_output_file_close() {
    ILogOutput*& f = photon_alog_detail::globals<>::file_out;
    if (f == nullptr) return -1;
    if (default_logger.log_output == f) default_logger.log_output = log_output_stderr;
    f->destruct();
    f = nullptr;
    return 0;
}
/// Sends default_logger's lines to the file `fn` (or to `fd`).
inline int log_output_file(const char* fn, uint64_t rotate_limit = UINT64_MAX, int max_log_files = 10,
                           uint64_t throttle = -1ULL) {
    ILogOutput* out = new_log_output_file(fn, rotate_limit, max_log_files, throttle);
    if (out == nullptr) return -1;
    log_output_file_close();
    photon_alog_detail::globals<>::file_out = out;
    default_logger.log_output = out;
    return 0;
}
inline int log_output_file(int fd, uint64_t rotate_limit = UINT64_MAX, uint64_t throttle = -1ULL) {
    (void)rotate_limit;
    ILogOutput* out = new_log_output_file(fd, throttle);
    log_output_file_close();
    photon_alog_detail::globals<>::file_out = out;
    default_logger.log_output = out;
    return 0;
}

/// A string of known length (not necessarily NUL-terminated).
struct ALogString {
    const char* s;
    size_t size;
    constexpr ALogString(const char* s_, size_t n) : s(s_), size(n) {}
    constexpr char operator[](size_t i) const { return s[i]; }
};

/// An ALogString made from a string literal (or any char array, its last
/// element taken as the terminator).
struct ALogStringL : public ALogString {
    template <size_t N>
    constexpr ALogStringL(const char (&s_)[N]) : ALogString(s_, N - 1) {}
};

/// An integer with formatting: DEC(x).width(6).padding('0'), HEX(x),
/// DEC(x).comma(true) (thousands separators).
struct ALogInteger {
    uint64_t value;
    bool negative;
    uint8_t base;
    uint8_t w = 0;
    char pad = ' ';
    bool use_comma = false;
    template <typename T>
    constexpr ALogInteger(T x, uint8_t base_)
        : value(magnitude(x, std::is_signed<T>())), negative(is_negative(x, std::is_signed<T>())), base(base_) {}
    ALogInteger& width(uint8_t n) {
        w = n;
        return *this;
    }
    ALogInteger& padding(char c) {
        pad = c;
        return *this;
    }
    ALogInteger& comma(bool c) {
        use_comma = c;
        return *this;
    }

private:
    template <typename T>
    static constexpr bool is_negative(T x, std::true_type) {
        return x < 0;
    }
    template <typename T>
    static constexpr bool is_negative(T, std::false_type) {
        return false;
    }
    template <typename T>
    static constexpr uint64_t magnitude(T x, std::true_type) {
        return x < 0 ? 0 - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
    }
    template <typename T>
    static constexpr uint64_t magnitude(T x, std::false_type) {
        return static_cast<uint64_t>(x);
    }
};
template <typename T>
inline ALogInteger DEC(T x) {
    return ALogInteger(x, 10);
}
template <typename T>
inline ALogInteger HEX(T x) {
    return ALogInteger(x, 16);
}
template <typename T>
inline ALogInteger BIN(T x) {
    return ALogInteger(x, 2);
}

/// A floating-point number with formatting: FP(x).precision(3).
struct FP {
    double x;
    int prec = -1;
    explicit FP(double v) : x(v) {}
    FP& precision(int p) {
        prec = p;
        return *this;
    }
};

/// An error number, printed as `errno=N(message)`; ERRNO() is errno now.
struct ERRNO {
    int no;
    ERRNO() : no(errno) {}
    constexpr explicit ERRNO(int n) : no(n) {}
};

/// One log line being built in a caller's buffer; written out by its
/// destructor.
class LogBuffer {
public:
    LogBuffer(char* buf, size_t size, ILogOutput* out, int level = ALOG_DEBUG) noexcept
        : m_buf(buf), m_ptr(buf), m_end(buf + size - 1), m_out(out), m_level(level) {}
    ~LogBuffer() {
        *m_ptr++ = '\n';
        if (m_out != nullptr) m_out->write(m_level, m_buf, m_ptr);
    }
    LogBuffer(const LogBuffer&) = delete;
    LogBuffer& operator=(const LogBuffer&) = delete;

    /// Appends `n` bytes (cut at the buffer's end).
    LogBuffer& append(const char* s, size_t n) noexcept {
        const size_t room = static_cast<size_t>(m_end - m_ptr);
        if (n > room) n = room;
        std::memcpy(m_ptr, s, n);
        m_ptr += n;
        return *this;
    }
    LogBuffer& operator<<(char c) noexcept { return append(&c, 1); }
    LogBuffer& operator<<(const char* s) noexcept { return s ? append(s, std::strlen(s)) : append("(null)", 6); }
    LogBuffer& operator<<(char* s) noexcept { return *this << static_cast<const char*>(s); }
    LogBuffer& operator<<(const ALogString& s) noexcept { return append(s.s, s.size); }
    LogBuffer& operator<<(bool b) noexcept { return *this << static_cast<int>(b); }
    LogBuffer& operator<<(const void* p) noexcept {
        ALogInteger x(reinterpret_cast<uintptr_t>(p), 16);
        return append("0x", 2) << x;
    }
    LogBuffer& operator<<(double x) noexcept { return printf_double("%.3f", x); }
    LogBuffer& operator<<(const FP& x) noexcept {
        if (x.prec < 0) return printf_double("%g", x.x);
        char fmt[16];
        std::snprintf(fmt, sizeof(fmt), "%%.%df", x.prec);
        return printf_double(fmt, x.x);
    }
    LogBuffer& operator<<(const ERRNO& e) noexcept {
        const int no = e.no;
        char msg[128];
        return *this << "errno=" << no << '(' << describe(no, msg, sizeof(msg)) << ')';
    }
    LogBuffer& operator<<(ALogInteger x) noexcept {
        static const char digits[] = "0123456789abcdef";
        char tmp[96];
        char* p = tmp + sizeof(tmp);
        int n = 0;
        uint64_t v = x.value;
        do {
            if (x.use_comma && n > 0 && n % 3 == 0) *--p = ',';
            *--p = digits[v % x.base];
            v /= x.base;
            ++n;
        } while (v != 0);
        if (x.negative) *--p = '-';
        for (int len = static_cast<int>(tmp + sizeof(tmp) - p); len < x.w && p > tmp; ++len) *--p = x.pad;
        return append(p, static_cast<size_t>(tmp + sizeof(tmp) - p));
    }
    template <typename T, typename std::enable_if<std::is_integral<T>::value, int>::type = 0>
    LogBuffer& operator<<(T x) noexcept {
        return *this << ALogInteger(x, 10);
    }
    template <typename T, typename std::enable_if<std::is_enum<T>::value, int>::type = 0>
    LogBuffer& operator<<(T x) noexcept {
        return *this << static_cast<typename std::underlying_type<T>::type>(x);
    }
    template <typename T, typename std::enable_if<std::is_floating_point<T>::value, int>::type = 0>
    LogBuffer& operator<<(T x) noexcept {
        return *this << static_cast<double>(x);
    }
    template <typename T, typename std::enable_if<!std::is_same<typename std::remove_cv<T>::type, char>::value &&
                                                      !std::is_function<T>::value,
                                                  int>::type = 0>
    LogBuffer& operator<<(T* p) noexcept {
        return *this << static_cast<const void*>(p);
    }
    template <typename... Ts>
    LogBuffer& operator<<(const std::tuple<Ts...>& t) {
        return print_tuple(t, std::make_index_sequence<sizeof...(Ts)>{});
    }

    /// Appends each argument in turn.
    LogBuffer& printf() { return *this; }
    template <typename T, typename... Ts>
    LogBuffer& printf(T&& x, Ts&&... xs) {
        *this << std::forward<T>(x);
        return printf(std::forward<Ts>(xs)...);
    }

    int level() const noexcept { return m_level; }

private:
    template <typename Tuple, size_t... I>
    LogBuffer& print_tuple(const Tuple& t, std::index_sequence<I...>) {
        return printf(std::get<I>(t)...);
    }
    LogBuffer& printf_double(const char* fmt, double x) noexcept {
        const size_t room = static_cast<size_t>(m_end - m_ptr);
        int n = std::snprintf(m_ptr, room + 1, fmt, x);
        if (n > 0) m_ptr += (static_cast<size_t>(n) > room ? room : static_cast<size_t>(n));
        return *this;
    }
    // strerror_r in either of its two shapes.
    static const char* describe(int no, char* buf, size_t n) noexcept { return pick(strerror_r(no, buf, n), buf); }
    static const char* pick(int, const char* buf) noexcept { return buf; }
    static const char* pick(const char* s, const char*) noexcept { return s; }

    char* m_buf;
    char* m_ptr;
    char* m_end;
    ILogOutput* m_out;
    int m_level;
};

/// `name=value` (VALUE(x)).
template <typename T>
struct NamedValue {
    ALogString name;
    const T& value;
};
template <size_t N, typename T>
inline NamedValue<T> make_named_value(const char (&name)[N], const T& value) {
    return NamedValue<T>{ALogString(name, N - 1), value};
}
/// Prints as `[x=value]`.
#define VALUE(x) make_named_value(#x, x)
template <typename T>
inline LogBuffer& operator<<(LogBuffer& log, const NamedValue<T>& v) {
    return log << '[' << v.name << '=' << v.value << ']';
}

namespace photon_alog_detail {

/// The text before each line: time, level, thread, place.
inline void prologue(LogBuffer& log, int level, const char* file, int line, const char* func) {
    struct timeval tv;
    ::gettimeofday(&tv, nullptr);
    struct tm t;
    const time_t secs = tv.tv_sec;
    ::gmtime_r(&secs, &t);
    log << DEC(t.tm_year + 1900) << '/' << DEC(t.tm_mon + 1).width(2).padding('0') << '/'
        << DEC(t.tm_mday).width(2).padding('0') << ' ' << DEC(t.tm_hour).width(2).padding('0') << ':'
        << DEC(t.tm_min).width(2).padding('0') << ':' << DEC(t.tm_sec).width(2).padding('0') << '.'
        << DEC(tv.tv_usec).width(6).padding('0');
    static const char names[] = "DEBUG" "INFO " "WARN " "ERROR" "FATAL" "TEMP " "AUDIT";
    const int l = level < ALOG_DEBUG ? ALOG_DEBUG : level > ALOG_AUDIT ? ALOG_AUDIT : level;
    log << '|' << ALogString(names + 5 * l, 5) << "|th=" << static_cast<const void*>(photon_thread_self()) << '|';
    if (level != ALOG_AUDIT) {
        const char* base = std::strrchr(file, '/');
        log << (base ? base + 1 : file) << ':' << line << '|' << func << ':';
    }
}

/// Formats `fmt` (backquotes take the arguments in turn), then appends
/// what is left of the arguments.
inline void format(LogBuffer& log, const char* fmt) { log << fmt; }
template <typename T, typename... Ts>
inline void format(LogBuffer& log, const char* fmt, T&& x, Ts&&... xs) {
    const char* q = std::strchr(fmt, '`');
    if (q == nullptr) {
        log << fmt;
        log.printf(std::forward<T>(x), std::forward<Ts>(xs)...);
        return;
    }
    log.append(fmt, static_cast<size_t>(q - fmt));
    log << std::forward<T>(x);
    format(log, q + 1, std::forward<Ts>(xs)...);
}

template <size_t N, typename... Ts>
inline void body(LogBuffer& log, const char (&fmt)[N], Ts&&... xs) {
    format(log, fmt, std::forward<Ts>(xs)...);
}
template <size_t N, typename... Ts>
inline void body(LogBuffer& log, char (&fmt)[N], Ts&&... xs) {
    format(log, fmt, std::forward<Ts>(xs)...);
}
template <typename T, typename... Ts>
inline void body(LogBuffer& log, T&& first, Ts&&... xs) {
    log.printf(std::forward<T>(first), std::forward<Ts>(xs)...);
}

/// Writes one line (called only when its level is on; kept out of line so
/// that a LOG_* statement costs its caller a compare and a call).
template <typename... Ts>
__attribute__((noinline, cold)) void emit_line(ALogLogger& logger, int level, const char* file, int line,
                                               const char* func, Ts... xs) {
    const int saved = errno;
    char buf[LOG_BUFFER_SIZE];
    {
        LogBuffer log(buf, sizeof(buf), logger.log_output, level);
        prologue(log, level, file, line, func);
        body(log, static_cast<Ts>(xs)...);
    }
    errno = saved;
}

/// How emit() hands an argument to emit_line: scalars by value (so that a
/// LOG_* statement whose level is off does not force its arguments into
/// memory), everything else by reference.
template <typename T>
struct pass {
    using type = typename std::conditional<std::is_scalar<typename std::remove_reference<T>::type>::value,
                                           typename std::remove_cv<typename std::remove_reference<T>::type>::type,
                                           const typename std::remove_reference<T>::type&>::type;
};

/// Inlined into the LOG_* statement: picks how each argument is passed.
template <typename... Ts>
__attribute__((always_inline)) inline void emit(ALogLogger& logger, int level, const char* file, int line,
                                                const char* func, const Ts&... xs) {
    emit_line<typename pass<const Ts&>::type...>(logger, level, file, line, func, xs...);
}

}  // namespace photon_alog_detail

/// Logs to `logger` at `level` when the level is on; an expression of type
/// void, its arguments evaluated only then.
#define PHOTON_ALOG_(logger, level, ...)                                                                  \
    (static_cast<uint32_t>(level) >= (logger).log_level                                                  \
         ? ::photon_alog_detail::emit((logger), (level), __FILE__, __LINE__, __func__, __VA_ARGS__) \
         : (void)0)

#define LOG_DEBUG(...) PHOTON_ALOG_(default_logger, ALOG_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) PHOTON_ALOG_(default_logger, ALOG_INFO, __VA_ARGS__)
#define LOG_WARN(...) PHOTON_ALOG_(default_logger, ALOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) PHOTON_ALOG_(default_logger, ALOG_ERROR, __VA_ARGS__)
#define LOG_FATAL(...) PHOTON_ALOG_(default_logger, ALOG_FATAL, __VA_ARGS__)
/// A temporary debugging line; keeps errno.
#define LOG_TEMP(...)                                          \
    do {                                                       \
        const int alog_errno_ = errno;                         \
        PHOTON_ALOG_(default_logger, ALOG_TEMP, __VA_ARGS__); \
        errno = alog_errno_;                                   \
    } while (0)
/// An audit line, to default_audit_logger (whose output is
/// log_output_null until the program sets one); no file/line/function.
#ifndef DISABLE_AUDIT
#define LOG_AUDIT(...) PHOTON_ALOG_(default_audit_logger, ALOG_AUDIT, __VA_ARGS__)
#else
#define LOG_AUDIT(...)
#endif

/// Sets errno; a scope may replace it with DECLARE_ERRNO_SETTER, which
/// defers the assignment to the scope's end.
inline void _alog_set_errno(int x) { errno = x; }
struct DeferrdErrnoSetter {
    int _saved_errno = 0;
    void operator()(int x) { _saved_errno = x; }
    ~DeferrdErrnoSetter() {
        if (_saved_errno) errno = _saved_errno;
    }
};
#define DECLARE_ERRNO_SETTER DeferrdErrnoSetter _alog_set_errno;

/// Logs an error, sets errno to `new_errno` (0: keeps errno), returns `retv`.
#define LOG_ERROR_RETURN(new_errno, retv, ...)             \
    {                                                      \
        int alog_xcode_ = static_cast<int>(new_errno);     \
        if (alog_xcode_ == 0) alog_xcode_ = errno;         \
        LOG_ERROR(__VA_ARGS__);                            \
        _alog_set_errno(alog_xcode_);                      \
        return retv;                                       \
    }
/// Logs an error with ` errno=N(message)` appended, sets errno to
/// `new_errno` (0: keeps errno), returns `retv`.
#define LOG_ERRNO_RETURN(new_errno, retv, ...)                \
    {                                                         \
        LOG_ERROR(__VA_ARGS__, ' ', ERRNO());                 \
        if (new_errno) _alog_set_errno(new_errno);            \
        return retv;                                          \
    }

namespace photon_alog_detail {
/// Counters for LOG_EVERY_N / LOG_FIRST_N / LOG_EVERY_T.
inline bool every_t(time_t& last, time_t period) {
    const time_t t = ::time(nullptr);
    if (last != 0 && last + period > t) return false;
    last = t;
    return true;
}
}  // namespace photon_alog_detail

/// `LOG_EVERY_N(10, LOG_INFO(...))`: the 1st, 11th, 21st ... time.
#define LOG_EVERY_N(N, ...)                                      \
    do {                                                         \
        static uint64_t alog_count_ = 0;                         \
        if (alog_count_++ % static_cast<uint64_t>(N) == 0) {     \
            __VA_ARGS__;                                         \
        }                                                        \
    } while (0)
/// `LOG_FIRST_N(10, LOG_INFO(...))`: the first N times only.
#define LOG_FIRST_N(N, ...)                                      \
    do {                                                         \
        static uint64_t alog_count_ = 0;                         \
        if (alog_count_ < static_cast<uint64_t>(N)) {            \
            ++alog_count_;                                       \
            __VA_ARGS__;                                         \
        }                                                        \
    } while (0)
/// `LOG_EVERY_T(10, LOG_INFO(...))`: at most once every T seconds.
#define LOG_EVERY_T(T, ...)                                      \
    do {                                                         \
        static time_t alog_last_ = 0;                            \
        if (::photon_alog_detail::every_t(alog_last_, (T))) {    \
            __VA_ARGS__;                                         \
        }                                                        \
    } while (0)
/// `LOG_FIRST_N_EVERY_T(N, T, LOG_INFO(...))`: N times per T seconds.
#define LOG_FIRST_N_EVERY_T(N, T, ...)                                    \
    do {                                                                  \
        static time_t alog_last_ = 0;                                     \
        static uint64_t alog_count_ = 0;                                  \
        if (::photon_alog_detail::every_t(alog_last_, (T))) alog_count_ = 0; \
        if (alog_count_ < static_cast<uint64_t>(N)) {                     \
            ++alog_count_;                                                \
            __VA_ARGS__;                                                  \
        }                                                                 \
    } while (0)

// new_async_log_output
#include <photon/common/detail/alog_async.h>

#endif  // PHOTON_CPP_COMMON_ALOG_H
