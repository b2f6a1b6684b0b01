// photon/thread/st.h: PhotonLibOS's State Threads API (st_init,
// st_thread_create, st_netfd_*, st_mutex_*, st_cond_*, ...). libphoton
// serves it as its own library: this header is the C header `st.h` of
// libphoton_st (include/st.h); link with -lphoton_st as well as -lphoton.
#ifndef PHOTON_CPP_THREAD_ST_H
#define PHOTON_CPP_THREAD_ST_H

#include <st.h>

#endif  // PHOTON_CPP_THREAD_ST_H
