# port-to-photon.sed: turns a C++ program written with std:: threads into one
# of photon threads, as PhotonLibOS's RocksDB port does, by renaming the
# threading names of std:: to photon_std:: (<photon/thread/std-compat.h>):
#
#   sed -f port-to-photon.sed prog.cpp > prog_photon.cpp
#   c++ -std=c++14 -I<libphoton>/include -I<libphoton>/cpp-wrapper prog_photon.cpp -lphoton
#
# Then main() runs as the main photon thread of a vcpu (photon::init), with
# a work pool of $PHOTON_STD_WORK_POOL vcpus when that is set, so that the
# program's threads run in parallel; see photon_std::run_as_main.
# Everything else (std::chrono, std::atomic, containers) is left alone.

# The threading headers become the photon_std header.
s|^\([[:space:]]*#[[:space:]]*include[[:space:]]*\)<thread>|\1<photon/thread/std-compat.h>|
s|^\([[:space:]]*#[[:space:]]*include[[:space:]]*\)<mutex>|\1<photon/thread/std-compat.h>|
s|^\([[:space:]]*#[[:space:]]*include[[:space:]]*\)<condition_variable>|\1<photon/thread/std-compat.h>|
s|^\([[:space:]]*#[[:space:]]*include[[:space:]]*\)<shared_mutex>|\1<photon/thread/std-compat.h>|

# Threads and this_thread.
s/\bstd::thread\b/photon_std::thread/g
s/\bstd::this_thread::/photon_std::this_thread::/g

# Mutexes (longest names first).
s/\bstd::recursive_timed_mutex\b/photon_std::recursive_timed_mutex/g
s/\bstd::recursive_mutex\b/photon_std::recursive_mutex/g
s/\bstd::shared_timed_mutex\b/photon_std::shared_timed_mutex/g
s/\bstd::shared_mutex\b/photon_std::shared_mutex/g
s/\bstd::timed_mutex\b/photon_std::timed_mutex/g
s/\bstd::mutex\b/photon_std::mutex/g

# Condition variables.
s/\bstd::condition_variable_any\b/photon_std::condition_variable_any/g
s/\bstd::condition_variable\b/photon_std::condition_variable/g
s/\bstd::cv_status\b/photon_std::cv_status/g

# Lock holders and helpers (std's own, re-exported by photon_std).
s/\bstd::lock_guard\b/photon_std::lock_guard/g
s/\bstd::unique_lock\b/photon_std::unique_lock/g
s/\bstd::shared_lock\b/photon_std::shared_lock/g
s/\bstd::scoped_lock\b/photon_std::scoped_lock/g
s/\bstd::defer_lock\b/photon_std::defer_lock/g
s/\bstd::try_to_lock\b/photon_std::try_to_lock/g
s/\bstd::adopt_lock\b/photon_std::adopt_lock/g

# call_once.
s/\bstd::call_once\b/photon_std::call_once/g
s/\bstd::once_flag\b/photon_std::once_flag/g

# main() runs on a vcpu: the program's main is renamed, and a new main
# hands it to photon_std::run_as_main.
s/^\([[:space:]]*\)int[[:space:]]\{1,\}main[[:space:]]*(/\1static int photon_std_ported_main(/
$a\
\
int main(int argc, char** argv) { return photon_std::run_as_main(photon_std_ported_main, argc, argv); }
