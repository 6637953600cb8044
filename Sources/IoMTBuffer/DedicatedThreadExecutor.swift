#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A `SerialExecutor` that runs every job on one dedicated OS thread, in submission order.
///
/// SQLite calls block (fsync at every commit, `quick_check` at open). Running them on Swift's
/// cooperative pool would stall unrelated tasks on a two-core gateway, so the buffer actor
/// uses this executor instead (`unownedExecutor`). The thread sleeps on a condition variable
/// when there is no work and exits after `shutdown()` once its queue is drained.
///
/// `@unchecked Sendable`: all mutable state (`pending`, `stopRequested`, `threadID`) is only
/// read or written while holding `lock` (a pthread mutex, paired with the condition variable
/// `wake`, which `Synchronization.Mutex` cannot provide); `running` is touched only by the
/// executor thread itself.
final class DedicatedThreadExecutor: SerialExecutor, @unchecked Sendable {
    private enum Work {
        case job(UnownedJob)
        case closure(@Sendable () -> Void)
    }

    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private let wake: UnsafeMutablePointer<pthread_cond_t>
    private var pending: [Work] = []
    private var running: [Work] = []
    private var stopRequested = false
    private var threadID = pthread_t()
    private let name: String

    /// Starts the thread. (`name` is kept for debugging; Glibc's `pthread_setname_np` is not
    /// visible to Swift without `_GNU_SOURCE`.)
    init(name: String, pathForErrors: String) throws(BufferError) {
        self.name = name
        lock = .allocate(capacity: 1)
        wake = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil)

        let context = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { raw in
            guard let raw else { return nil }
            let executor = Unmanaged<DedicatedThreadExecutor>.fromOpaque(raw).takeRetainedValue()
            executor.runLoop()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<DedicatedThreadExecutor>.fromOpaque(context).release()
            throw BufferError.cannotStartThread(path: pathForErrors, systemErrno: rc)
        }
        pthread_mutex_lock(lock)
        threadID = tid
        pthread_mutex_unlock(lock)
        pthread_detach(tid)
    }

    deinit {
        pthread_cond_destroy(wake)
        pthread_mutex_destroy(lock)
        wake.deallocate()
        lock.deallocate()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        submit(.job(UnownedJob(job)))
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Lets the runtime confirm isolation (e.g. `assumeIsolated`) without trapping.
    func isIsolatingCurrentContext() -> Bool? {
        pthread_mutex_lock(lock)
        let tid = threadID
        pthread_mutex_unlock(lock)
        return pthread_equal(pthread_self(), tid) != 0
    }

    /// Runs `body` on the executor thread and returns its result to the awaiting task.
    /// Used to run the blocking open before the actor exists.
    func run<T>(_ body: @escaping @Sendable () throws(BufferError) -> sending T) async throws(BufferError) -> sending T {
        let result: Result<T, BufferError> = await withCheckedContinuation { continuation in
            submit(.closure {
                let r: Result<T, BufferError>
                do throws(BufferError) { r = .success(try body()) } catch { r = .failure(error) }
                continuation.resume(returning: r)
            })
        }
        switch consume result {
        case .success(let value): return value
        case .failure(let error): throw error
        }
    }

    /// Asks the thread to exit once every job already queued has run.
    func shutdown() {
        pthread_mutex_lock(lock)
        stopRequested = true
        pthread_cond_signal(wake)
        pthread_mutex_unlock(lock)
    }

    private func submit(_ work: Work) {
        pthread_mutex_lock(lock)
        pending.append(work)
        pthread_cond_signal(wake)
        pthread_mutex_unlock(lock)
    }

    private func runLoop() {
        let unownedSelf = asUnownedSerialExecutor()
        while true {
            pthread_mutex_lock(lock)
            while pending.isEmpty && !stopRequested {
                pthread_cond_wait(wake, lock)
            }
            if pending.isEmpty {
                // stopRequested and drained.
                pthread_mutex_unlock(lock)
                return
            }
            swap(&pending, &running)
            pthread_mutex_unlock(lock)
            for work in running {
                switch work {
                case .job(let job): job.runSynchronously(on: unownedSelf)
                case .closure(let body): body()
                }
            }
            running.removeAll(keepingCapacity: true)
        }
    }
}
