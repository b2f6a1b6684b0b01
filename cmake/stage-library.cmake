# Run by the photon_cargo target after `cargo build --release` (cmake -P).
# Copies cargo's libphoton.so / libphoton.a into STAGE_DIR as
#   REALNAME (libphoton.so.X.Y.Z), SONAME -> REALNAME, libphoton.so -> SONAME,
#   libphoton.a, and the LD_PRELOAD shim libphoton_preload.so (which finds
#   SONAME beside itself through its $ORIGIN run path)
# and checks that the shared library carries the expected DT_SONAME: without it
# programs would record the build path of the library instead of SONAME.
# Inputs: CARGO_OUT, STAGE_DIR, REALNAME, SONAME, HEADER.
cmake_minimum_required(VERSION 3.19)

foreach(_var CARGO_OUT STAGE_DIR REALNAME SONAME HEADER)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "stage-library.cmake: ${_var} is not set")
  endif()
endforeach()

set(_so "${CARGO_OUT}/libphoton.so")
set(_a "${CARGO_OUT}/libphoton.a")
set(_preload "${CARGO_OUT}/libphoton_preload.so")
foreach(_f "${_so}" "${_a}" "${_preload}" "${HEADER}")
  if(NOT EXISTS "${_f}")
    message(FATAL_ERROR "${_f} is missing after cargo build")
  endif()
endforeach()

find_program(_readelf NAMES readelf llvm-readelf)
if(_readelf)
  execute_process(COMMAND "${_readelf}" -d "${_so}"
                  OUTPUT_VARIABLE _dyn RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "readelf -d ${_so} failed")
  endif()
  if(NOT _dyn MATCHES "\\(SONAME\\)[^\n]*\\[${SONAME}\\]")
    message(FATAL_ERROR
      "${_so} does not have the soname ${SONAME}.\n"
      "build.rs should print: cargo:rustc-cdylib-link-arg=-Wl,-soname,${SONAME}")
  endif()
else()
  message(WARNING "readelf not found: the soname of ${_so} is not checked")
endif()

file(MAKE_DIRECTORY "${STAGE_DIR}")
# copy_if_different keeps timestamps of unchanged files, so nothing relinks
# when cargo had nothing to do.
execute_process(COMMAND "${CMAKE_COMMAND}" -E copy_if_different
                        "${_so}" "${STAGE_DIR}/${REALNAME}"
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${CMAKE_COMMAND}" -E copy_if_different
                        "${_a}" "${STAGE_DIR}/libphoton.a"
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${CMAKE_COMMAND}" -E copy_if_different
                        "${_preload}" "${STAGE_DIR}/libphoton_preload.so"
                COMMAND_ERROR_IS_FATAL ANY)
# The userspace stack's DPDK shim, built only where libdpdk was found
# (loaded by libphoton from its own directory at the first dpdk: stack).
if(EXISTS "${CARGO_OUT}/libphoton_dpdk.so")
  execute_process(COMMAND "${CMAKE_COMMAND}" -E copy_if_different
                          "${CARGO_OUT}/libphoton_dpdk.so" "${STAGE_DIR}/libphoton_dpdk.so"
                  COMMAND_ERROR_IS_FATAL ANY)
else()
  file(REMOVE "${STAGE_DIR}/libphoton_dpdk.so")
endif()

# The symlink chain; a stale link (from another version) is replaced.
function(stage_symlink link_target link)
  set(path "${STAGE_DIR}/${link}")
  if(IS_SYMLINK "${path}")
    file(READ_SYMLINK "${path}" current)
    if(current STREQUAL link_target)
      return()
    endif()
  endif()
  file(REMOVE "${path}")
  file(CREATE_LINK "${link_target}" "${path}" SYMBOLIC)
endfunction()
stage_symlink("${REALNAME}" "${SONAME}")
stage_symlink("${SONAME}" "libphoton.so")
