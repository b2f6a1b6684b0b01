// photon/common/alog-stdstring.h: std::string (and, from C++17,
// std::string_view) in PhotonLibOS's log lines (photon/common/alog.h).
#ifndef PHOTON_CPP_COMMON_ALOG_STDSTRING_H
#define PHOTON_CPP_COMMON_ALOG_STDSTRING_H

#include <photon/common/alog.h>

#include <string>
#if __cplusplus >= 201703L
#include <string_view>
#endif

inline LogBuffer& operator<<(LogBuffer& log, const std::string& s) { return log.append(s.data(), s.size()); }

#if __cplusplus >= 201703L
inline LogBuffer& operator<<(LogBuffer& log, std::string_view s) { return log.append(s.data(), s.size()); }
#endif

/// A std::string as an ALogString (PhotonLibOS's helper).
inline ALogString alog_string(const std::string& s) { return ALogString(s.data(), s.size()); }

#endif  // PHOTON_CPP_COMMON_ALOG_STDSTRING_H
