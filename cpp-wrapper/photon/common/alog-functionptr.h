// photon/common/alog-functionptr.h: logging function pointers and member
// function pointers, as PhotonLibOS prints them:
// `function_pointer<demangled type> at 0x...`.
#ifndef PHOTON_CPP_COMMON_ALOG_FUNCTIONPTR_H
#define PHOTON_CPP_COMMON_ALOG_FUNCTIONPTR_H

#include <photon/common/alog.h>

#include <cxxabi.h>

#include <cstdlib>
#include <cstring>
#include <typeinfo>

namespace photon_alog_detail {
/// The type's demangled name, then the pointer's bytes as an address (a member
/// function pointer shows its first word: the function, or its vtable slot).
template <typename P>
inline LogBuffer& print_function_pointer(LogBuffer& log, const P& fp) {
    int status = 0;
    char* name = abi::__cxa_demangle(typeid(P).name(), nullptr, nullptr, &status);
    log << "function_pointer<" << (name ? static_cast<const char*>(name) : typeid(P).name()) << "> at ";
    std::free(name);
    const void* addr = nullptr;
    std::memcpy(&addr, &fp, sizeof addr);
    return log << addr;
}
}  // namespace photon_alog_detail

template <typename R, typename... Args>
inline LogBuffer& operator<<(LogBuffer& log, R (*fp)(Args...)) {
    return photon_alog_detail::print_function_pointer(log, fp);
}
template <typename R, typename C, typename... Args>
inline LogBuffer& operator<<(LogBuffer& log, R (C::*fp)(Args...)) {
    return photon_alog_detail::print_function_pointer(log, fp);
}
template <typename R, typename C, typename... Args>
inline LogBuffer& operator<<(LogBuffer& log, R (C::*fp)(Args...) const) {
    return photon_alog_detail::print_function_pointer(log, fp);
}

#endif  // PHOTON_CPP_COMMON_ALOG_FUNCTIONPTR_H
