// The locks of photon/thread/thread.h: mutex, seq_mutex, recursive_mutex,
// spinlock, condition_variable, semaphore, rwlock (RLOCK/WLOCK),
// scoped_rwlock, locker/scoped_lock, SCOPED_LOCK, WITH_LOCK; timeouts and
// Photon's return conventions; the locks working across vcpus.
#include <photon/photon.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>
#include <photon/thread/workerpool.h>

#include <atomic>
#include <vector>

#include "check.h"

// A global lock: constexpr-constructed, its C lock allocated on first use.
static photon::mutex g_mutex;

static void join(photon::thread* th) { photon::thread_join(photon::thread_enable_join(th)); }

static void test_mutex() {
    SAY("mutex: lock, try_lock (EBUSY when held), EDEADLK when the owner locks again, unlock");
    photon::mutex m;
    CHECK_OK(m.lock());
    CHECK_ERRNO(m.lock(), EDEADLK);
    bool tried = false;
    join(photon::thread_create11([&] {
        CHECK_ERRNO(m.try_lock(), EBUSY);
        SAY("mutex: a timed lock of a held mutex fails with ETIMEDOUT after the timeout");
        const uint64_t t0 = photon::now;
        CHECK_ERRNO(m.lock(20000), ETIMEDOUT);
        CHECK(photon::now - t0 >= 20000, "waited %lu us", (unsigned long)(photon::now - t0));
        CHECK_ERRNO(m.lock(0), ETIMEDOUT);
        tried = true;
    }));
    CHECK(tried, "thread ran");
    m.unlock();
    CHECK_OK(m.try_lock());
    m.unlock();
    SAY("mutex: unlocking a mutex one does not hold does nothing");
    m.unlock();
    CHECK_OK(m.lock(photon::Timeout(1000)));
    m.unlock();

    SAY("mutex: 8 threads x 1000 increments that yield inside the critical section");
    long counter = 0;
    std::vector<photon::thread*> ths;
    for (int i = 0; i < 8; i++) {
        ths.push_back(photon::thread_create11([&] {
            for (int k = 0; k < 1000; k++) {
                SCOPED_LOCK(g_mutex);
                const long v = counter;
                if (k % 7 == 0) photon::thread_yield();
                counter = v + 1;
            }
        }));
    }
    for (auto th : ths) join(th);
    CHECK(counter == 8000, "counter %ld", counter);
    CHECK(g_mutex.native_handle() != nullptr, "lazily allocated");

    SAY("seq_mutex is a mutex");
    photon::seq_mutex sm;
    CHECK_OK(sm.lock());
    sm.unlock();
}

static void test_recursive_mutex() {
    SAY("recursive_mutex: the owner nests; others wait until the last unlock");
    photon::recursive_mutex rm;
    CHECK_OK(rm.lock());
    CHECK_OK(rm.lock());
    CHECK_OK(rm.try_lock());
    bool got = false;
    photon::thread* other = photon::thread_create11([&] {
        CHECK_ERRNO(rm.try_lock(), EBUSY);
        CHECK_ERRNO(rm.lock(10000), ETIMEDOUT);
        CHECK_OK(rm.lock());
        got = true;
        rm.unlock();
    });
    photon::thread_enable_join(other);
    photon::thread_usleep(20000);
    rm.unlock();
    rm.unlock();
    photon::thread_usleep(5000);
    CHECK(!got, "other thread got it while still held once");
    rm.unlock();
    photon::thread_join(reinterpret_cast<photon::join_handle*>(other));
    CHECK(got, "other thread got it after the last unlock");
}

static void test_spinlock() {
    SAY("spinlock: 0 / -1 conventions");
    photon::spinlock s;
    CHECK_OK(s.lock());
    CHECK(s.try_lock() == -1, "try_lock of a held spinlock");
    s.unlock();
    CHECK_OK(s.try_lock());
    s.unlock();
    {
        SCOPED_LOCK(s);
        CHECK(s.try_lock() == -1, "SCOPED_LOCK holds it");
    }
    CHECK_OK(s.try_lock());
    s.unlock();
}

static void test_condition_variable() {
    SAY("condition_variable: wait(mutex&), wait(mutex*), wait(scoped_lock&), notify_one/notify_all");
    photon::mutex m;
    photon::condition_variable cv;
    int ready = 0, woke = 0;
    std::vector<photon::thread*> ths;
    for (int i = 0; i < 3; i++) {
        ths.push_back(photon::thread_create11([&, i] {
            photon::scoped_lock lock(m);
            while (ready == 0) {
                if (i == 0) CHECK_OK(cv.wait(m));
                if (i == 1) CHECK_OK(cv.wait(&m));
                if (i == 2) CHECK_OK(cv.wait(lock));
            }
            woke++;
        }));
    }
    photon::thread_yield();
    {
        SCOPED_LOCK(m);
        ready = 1;
    }
    CHECK(cv.notify_one() == 1, "notify_one with waiters says it woke one");
    photon::thread_usleep(5000);
    CHECK(woke == 1, "notify_one woke %d", woke);
    CHECK_OK(cv.notify_all());
    for (auto th : ths) join(th);
    CHECK(woke == 3, "woke %d", woke);

    SAY("condition_variable: a timed wait fails with ETIMEDOUT and holds the mutex again");
    CHECK_OK(m.lock());
    const uint64_t t0 = photon::now;
    CHECK_ERRNO(cv.wait(m, 20000), ETIMEDOUT);
    CHECK(photon::now - t0 >= 20000, "waited");
    CHECK_ERRNO(m.try_lock(), EBUSY);  // held by us (a try by the owner is EBUSY too)
    SAY("condition_variable: predicate wait: 0 when it holds, -1/ETIMEDOUT when it never does");
    CHECK_OK(cv.wait(m, [] { return true; }, 0));
    CHECK_ERRNO(cv.wait(m, [] { return false; }, 10000), ETIMEDOUT);
    int flag = 0;
    photon::thread* setter = photon::thread_create11([&] {
        SCOPED_LOCK(m);
        flag = 1;
        cv.notify_all();
    });
    CHECK_OK(cv.wait(m, [&] { return flag == 1; }));
    m.unlock();
    join(setter);
    SAY("condition_variable: an interrupt ends a wait with its errno");
    photon::thread* me = photon::CURRENT;
    photon::thread* interrupter = photon::thread_create11([me] { photon::thread_interrupt(me, EPIPE); });
    CHECK_OK(m.lock());
    CHECK_ERRNO(cv.wait(m), EPIPE);
    m.unlock();
    join(interrupter);
    SAY("condition_variable: wait_no_lock, woken by a notify; times out otherwise");
    photon::thread* notifier = photon::thread_create11([&] { cv.notify_one(); });
    CHECK_OK(cv.wait_no_lock());
    join(notifier);
    CHECK_ERRNO(cv.wait_no_lock(5000), ETIMEDOUT);
    SAY("condition_variable: a cv never waited on notifies fine");
    photon::condition_variable fresh;
    CHECK_OK(fresh.notify_all());
    CHECK(fresh.notify_one() == 0, "notify_one of a fresh cv woke someone");
    SAY("condition_variable: notify_one says whether it woke a thread (1, then 0)");
    photon::thread* waiter = photon::thread_create11([&] { CHECK_OK(cv.wait_no_lock()); });
    photon::thread_yield();
    CHECK(cv.notify_one() == 1, "woke the waiter");
    CHECK(cv.notify_one() == 0, "nobody left");
    join(waiter);
}

static void test_semaphore() {
    SAY("semaphore: counts, FIFO wakeups, timeouts");
    photon::semaphore sem(2);
    CHECK_OK(sem.wait(2));
    CHECK_ERRNO(sem.wait(1, 10000), ETIMEDOUT);
    std::vector<int> order;
    std::vector<photon::thread*> ths;
    for (int i = 0; i < 3; i++)
        ths.push_back(photon::thread_create11([&, i] {
            CHECK_OK(sem.wait(1));
            order.push_back(i);
        }));
    photon::thread_yield();
    CHECK_OK(sem.signal(3));
    for (auto th : ths) join(th);
    CHECK(order.size() == 3 && order[0] == 0 && order[1] == 1 && order[2] == 2, "order");
    CHECK_OK(sem.signal(0));
    SAY("semaphore: count() follows waits and signals; an unused one reports its initial count");
    CHECK(photon::semaphore(5).count() == 5, "fresh count");
    CHECK(sem.count() == 0, "count %lu", (unsigned long)sem.count());
    CHECK_OK(sem.signal(4));
    CHECK(sem.count() == 4, "count %lu", (unsigned long)sem.count());
    CHECK_OK(sem.wait(3));
    CHECK(sem.count() == 1, "count %lu", (unsigned long)sem.count());
    CHECK_OK(sem.wait(1));
    SAY("semaphore: wait retries through an interrupt, wait_interruptible does not");
    photon::thread* me = photon::CURRENT;
    photon::thread* helper = photon::thread_create11([&] {
        photon::thread_interrupt(me, EINTR);
        photon::thread_usleep(5000);
        sem.signal(1);
    });
    CHECK_OK(sem.wait(1));
    join(helper);
    helper = photon::thread_create11([&] { photon::thread_interrupt(me, EINTR); });
    CHECK_ERRNO(sem.wait_interruptible(1), EINTR);
    join(helper);
}

static void test_rwlock() {
    SAY("rwlock: readers share, a writer excludes; bad mode is EINVAL");
    photon::rwlock rw;
    CHECK_ERRNO(rw.lock(42), EINVAL);
    CHECK_ERRNO(rw.unlock(), EINVAL);
    CHECK_OK(rw.lock(photon::RLOCK));
    bool reader_in = false;
    photon::thread* reader = photon::thread_create11([&] {
        CHECK_OK(rw.lock(photon::RLOCK, 100000));
        reader_in = true;
        rw.unlock();
        CHECK_ERRNO(rw.lock(photon::WLOCK, 10000), ETIMEDOUT);  // main still reads
    });
    join(reader);
    CHECK(reader_in, "second reader");
    CHECK_OK(rw.unlock());
    CHECK_OK(rw.lock(photon::WLOCK));
    photon::thread* blocked = photon::thread_create11([&] {
        CHECK_ERRNO(rw.lock(photon::RLOCK, 10000), ETIMEDOUT);
        CHECK_ERRNO(rw.lock(photon::WLOCK, 10000), ETIMEDOUT);
    });
    join(blocked);
    CHECK_ERRNO(rw.lock(photon::WLOCK), EDEADLK);
    CHECK_OK(rw.unlock());
    SAY("scoped_rwlock");
    {
        photon::scoped_rwlock r1(rw, photon::RLOCK);
        photon::scoped_rwlock r2(rw, photon::RLOCK);
        CHECK(r1.locked() && r2, "two scoped readers");
    }
    {
        photon::scoped_rwlock w(rw, photon::WLOCK);
        CHECK(w.locked(), "scoped writer");
    }
    CHECK_OK(rw.lock(photon::WLOCK, 0));
    CHECK_OK(rw.unlock());

    SAY("rwlock: try_lock takes a free lock, and is refused at once (EBUSY, no yield) when it cannot");
    CHECK_ERRNO(rw.try_lock(42), EINVAL);
    CHECK_OK(rw.try_lock(photon::RLOCK));
    CHECK_OK(rw.try_lock(photon::RLOCK));
    std::atomic<int> runs{0};
    std::atomic<bool> stop{false};
    photon::thread* spinner = photon::thread_create11([&] {
        while (!stop) {
            runs++;
            photon::thread_yield();
        }
    });
    const int before = runs;
    for (int i = 0; i < 1000; i++) CHECK_ERRNO(rw.try_lock(photon::WLOCK), EBUSY);
    CHECK(runs == before, "a refused try_lock yielded: the other thread ran %d times", runs - before);
    stop = true;
    join(spinner);
    CHECK_OK(rw.unlock());
    CHECK_OK(rw.unlock());
    CHECK_OK(rw.try_lock(photon::WLOCK));
    CHECK_ERRNO(rw.try_lock(photon::WLOCK), EDEADLK);
    CHECK_OK(rw.unlock());
}

static void test_lockers() {
    SAY("locker / scoped_lock / SCOPED_LOCK with a reference or a pointer, do_lock = 0, WITH_LOCK");
    photon::mutex m;
    {
        photon::scoped_lock l(m);
        CHECK(l.locked() && l, "scoped_lock locks");
        l.unlock();
        CHECK(!l.locked(), "unlock");
        CHECK_OK(l.lock());
        photon::scoped_lock moved(std::move(l));
        CHECK(moved.locked() && !l.locked(), "moved");
    }
    CHECK_OK(m.try_lock());
    m.unlock();
    {
        photon::locker<photon::mutex> l(&m, 0);
        CHECK(!l.locked(), "do_lock = 0");
        CHECK_OK(l.try_lock());
    }
    {
        SCOPED_LOCK(&m);
        photon::thread* t = photon::thread_create11([&] { CHECK_ERRNO(m.try_lock(), EBUSY); });
        join(t);
    }
    photon::recursive_mutex rm;
    {
        SCOPED_LOCK(rm);
        SCOPED_LOCK(rm);
    }
    CHECK_OK(rm.try_lock());
    rm.unlock();
    int runs = 0;
    WITH_LOCK(m) { runs++; }
    CHECK(runs == 1, "WITH_LOCK body ran");
    CHECK_OK(m.try_lock());
    m.unlock();
}

static void test_across_vcpus() {
    SAY("mutex and condition_variable across 3 vcpus (a work pool): 4 x 2000 increments, then a handshake");
    photon::WorkPool pool(3);
    photon::mutex m;
    photon::condition_variable cv;
    long counter = 0;
    int done = 0;
    for (int i = 0; i < 4; i++) {
        pool.async_call(new auto([&] {
            for (int k = 0; k < 2000; k++) {
                SCOPED_LOCK(m);
                counter++;
            }
            SCOPED_LOCK(m);
            done++;
            cv.notify_all();
        }));
    }
    {
        SCOPED_LOCK(m);
        CHECK_OK(cv.wait(m, [&] { return done == 4; }, 20 * 1000 * 1000));
    }
    CHECK(counter == 8000, "counter %ld", counter);
    photon::semaphore sem;
    pool.async_call(new auto([&] { sem.signal(1); }));
    CHECK_OK(sem.wait(1, 10 * 1000 * 1000));
}

int main() {
    CHECK_OK(photon::init());
    test_mutex();
    test_recursive_mutex();
    test_spinlock();
    test_condition_variable();
    test_semaphore();
    test_rwlock();
    test_lockers();
    test_across_vcpus();
    CHECK_OK(photon::fini());
    std::printf("locks: all checks passed\n");
    return 0;
}
