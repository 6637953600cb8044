#if canImport(Glibc)
import Glibc
#endif
import IoMTConfig
import Logging
import Synchronization

/// Runs `alerts.hook.command` for an alert (a buzzer, a bedside display): the alert JSON on
/// stdin, stdout and stderr to /dev/null, killed with SIGKILL after `timeout_ms`. It never
/// blocks ingest or the uplink: each run is waited for on its own thread (not the cooperative
/// pool), at most `maxConcurrent` at once (more are skipped with a warning). Failures are
/// logged without PHI (the program and the exit status only).
final class HookRunner: Sendable {
    static let maxConcurrent = 4

    private let hook: AgentConfig.Alerts.Hook
    private let logger: Logger
    private let running = Mutex<Int>(0)
    private let waiters = Mutex<[CheckedContinuation<Void, Never>]>([])

    /// Runs that finished, were killed, or could not start (for tests and status).
    let finished = Mutex<(ok: Int, failed: Int, killed: Int)>((0, 0, 0))

    init(hook: AgentConfig.Alerts.Hook, logger: Logger) {
        self.hook = hook
        self.logger = logger
    }

    /// Starts the hook; returns at once.
    func run(stdin payload: [UInt8]) {
        guard !hook.command.isEmpty else { return }
        let admitted = running.withLock { n -> Bool in
            guard n < HookRunner.maxConcurrent else { return false }
            n += 1
            return true
        }
        guard admitted else {
            logger.warning("alert hook not run: earlier runs are still going", metadata: ["running": "\(HookRunner.maxConcurrent)"])
            return
        }
        let pid: pid_t, input: Int32
        do {
            (pid, input) = try spawn()
        } catch {
            logger.error("alert hook could not be started", metadata: ["program": "\(hook.command[0])", "error": "\(error)"])
            finished.withLock { $0.failed += 1 }
            done()
            return
        }
        // The payload is small (well under a socket buffer): written now, then EOF.
        payload.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var off = 0
            while off < raw.count {
                let n = send(input, base + off, raw.count - off, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                if n <= 0 { break }
                off += n
            }
        }
        close(input)

        // exited: the child has terminated (not yet reaped, so its pid cannot be reused while
        // the timer may still kill it).
        let state = Mutex<(exited: Bool, killed: Bool)>((false, false))
        let timeout = hook.timeoutMilliseconds
        let timer = Task {
            do { try await Task.sleep(for: .milliseconds(timeout)) } catch { return }
            state.withLock { s in
                if !s.exited {
                    kill(pid, SIGKILL)
                    s.killed = true
                }
            }
        }
        let program = hook.command[0]
        let logger = self.logger
        startThread { [self] in
            var info = siginfo_t()
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
            let killed = state.withLock { s -> Bool in
                s.exited = true
                return s.killed
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            timer.cancel()
            let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            if killed {
                logger.warning("alert hook killed at its timeout", metadata: ["program": "\(program)", "timeout_ms": "\(timeout)"])
                finished.withLock { $0.killed += 1 }
            } else if code != 0 {
                logger.warning("alert hook failed", metadata: ["program": "\(program)", "exit_status": "\(code)"])
                finished.withLock { $0.failed += 1 }
            } else {
                finished.withLock { $0.ok += 1 }
            }
            done()
        }
    }

    /// Returns once no run is going (at shutdown).
    func waitForAll() async {
        await withCheckedContinuation { c in
            let resumeNow = running.withLock { n -> Bool in
                if n == 0 { return true }
                waiters.withLock { $0.append(c) }
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    private func done() {
        let toResume = running.withLock { n -> [CheckedContinuation<Void, Never>] in
            n -= 1
            guard n == 0 else { return [] }
            return waiters.withLock { w in defer { w.removeAll() }; return w }
        }
        for c in toResume { c.resume() }
    }

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    private func spawn() throws(SpawnError) -> (pid_t, Int32) {
        var fds: [Int32] = [-1, -1]
        // A socket pair (not a pipe): written with MSG_NOSIGNAL, a hook that exits without
        // reading is EPIPE, not SIGPIPE for the agent. Close-on-exec so no other child inherits it.
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw SpawnError(description: "socketpair: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var argv: [UnsafeMutablePointer<CChar>?] = hook.command.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, hook.command[0], &actions, &attr, &argv, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw SpawnError(description: String(cString: strerror(rc)))
        }
        return (pid, fds[0])
    }
}

private final class ThreadBody: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// A detached POSIX thread running `body` (blocking waits belong here, not on the cooperative pool).
private func startThread(_ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { arg in
        guard let arg else { return nil }
        Unmanaged<ThreadBody>.fromOpaque(arg).takeRetainedValue().body()
        return nil
    }, box)
    if rc == 0 {
        pthread_detach(thread)
    } else {
        Unmanaged<ThreadBody>.fromOpaque(box).takeRetainedValue().body()
    }
}
