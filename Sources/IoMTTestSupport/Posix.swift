import IoMTThreads
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Errors from the test helpers, with enough context to see what went wrong.
public struct TestSupportError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A value that async code can wait on until a predicate holds, with a timeout. Updates wake
/// the waiters (no polling).
public final class Watched<Value: Sendable>: Sendable {
    private struct Waiter {
        var id: Int
        var predicate: @Sendable (Value) -> Bool
        var continuation: CheckedContinuation<Bool, Never>
    }
    private struct State {
        var value: Value
        var waiters: [Waiter] = []
        var expired: Set<Int> = []
        var nextID = 0
    }
    private let state: Mutex<State>

    public init(_ value: Value) { state = Mutex(State(value: value)) }

    public var value: Value { state.withLock { $0.value } }

    public func update(_ body: (inout Value) -> Void) {
        let ready: [CheckedContinuation<Bool, Never>] = state.withLock { s in
            body(&s.value)
            var ready: [CheckedContinuation<Bool, Never>] = []
            s.waiters.removeAll { w in
                if w.predicate(s.value) { ready.append(w.continuation); return true }
                return false
            }
            return ready
        }
        for c in ready { c.resume(returning: true) }
    }

    /// `true` when `predicate` held before `timeout`, `false` on timeout. The predicate runs
    /// under this object's lock: it must only look at its argument (not at `value`).
    public func wait(timeout: Duration, until predicate: @escaping @Sendable (Value) -> Bool) async -> Bool {
        let id = state.withLock { s in defer { s.nextID += 1 }; return s.nextID }
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            self.expire(id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let result: Bool? = state.withLock { s in
                if predicate(s.value) { return true }
                if s.expired.remove(id) != nil { return false }
                s.waiters.append(Waiter(id: id, predicate: predicate, continuation: c))
                return nil
            }
            if let result { c.resume(returning: result) }
        }
    }

    private func expire(_ id: Int) {
        let c: CheckedContinuation<Bool, Never>? = state.withLock { s in
            if let i = s.waiters.firstIndex(where: { $0.id == id }) {
                return s.waiters.remove(at: i).continuation
            }
            s.expired.insert(id)
            return nil
        }
        c?.resume(returning: false)
    }
}

/// Runs blocking work (a `recv` with a timeout, a pipe read) on its own thread and awaits it, so
/// it never occupies a thread of the cooperative pool, which other tests need (2 on 2 cores).
public func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in runDetachedOrInline { c.resume(returning: body()) } }
}

/// A unique temporary directory, removed (recursively) when this object is released.
public final class TempDir: Sendable {
    public let path: String

    public init(prefix: String = "iomt-test") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made: String? = template.withUnsafeMutableBufferPointer { b in
            guard let base = b.baseAddress, let r = mkdtemp(base) else { return nil }
            return String(cString: r)
        }
        guard let made else { throw TestSupportError("mkdtemp failed: \(String(cString: strerror(errno)))") }
        path = made
    }

    /// `path/name`.
    public func file(_ name: String) -> String { "\(path)/\(name)" }

    public func write(_ name: String, _ contents: String) throws {
        let p = file(name)
        guard let f = fopen(p, "w") else { throw TestSupportError("cannot write \(p): \(String(cString: strerror(errno)))") }
        defer { fclose(f) }
        _ = fputs(contents, f)
    }

    public func read(_ name: String) -> String? {
        guard let f = fopen(file(name), "r") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public func makeDirectory(_ name: String) throws {
        guard mkdir(file(name), 0o700) == 0 else { throw TestSupportError("mkdir \(name) failed") }
    }

    deinit {
        _ = try? ChildProcess.runBlocking(["/bin/rm", "-rf", path])
    }
}

/// A free TCP port on 127.0.0.1 (bound to port 0, read back, closed). Another process may take
/// it before use; the brokers started here use it immediately.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestSupportError("socket failed") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
            bind(fd, sp, len) == 0 ? getsockname(fd, sp, &len) : -1
        }
    }
    guard rc == 0 else { throw TestSupportError("bind/getsockname failed") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A child process started with `posix_spawn`. Its stdout and stderr are merged and captured
/// (see ``output``); a thread blocked in `waitpid` records the exit, so ``waitForExit(timeout:)``
/// needs no polling. Killed with SIGKILL when released while still running.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let arguments: [String]
    /// Everything the child wrote so far (stdout + stderr).
    public let output = Watched("")
    /// The raw `waitpid` status once exited.
    public let exitStatus = Watched<Int32?>(nil)
    /// True once the child's output reached end of file.
    public let outputClosed = Watched(false)

    public init(_ arguments: [String]) throws {
        self.arguments = arguments
        let (child, readFD) = try ChildProcess.spawn(arguments)
        pid = child
        let output = self.output
        let outputClosed = self.outputClosed
        runDetachedOrInline {
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(readFD, &buf, buf.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                let s = String(decoding: buf[0..<n], as: UTF8.self)
                output.update { $0 += s }
            }
            close(readFD)
            outputClosed.update { $0 = true }
        }
        let exitStatus = self.exitStatus
        runDetachedOrInline {
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            exitStatus.update { $0 = status }
        }
    }

    public var isRunning: Bool { exitStatus.value == nil }

    /// Sends a signal (by PID) if the child has not exited.
    public func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }

    /// `true` if the child exited within `timeout`.
    @discardableResult
    public func waitForExit(timeout: Duration) async -> Bool {
        await exitStatus.wait(timeout: timeout) { $0 != nil }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL and wait.
    public func terminate(grace: Duration = .seconds(5)) async {
        signal(SIGTERM)
        if await waitForExit(timeout: grace) { return }
        signal(SIGKILL)
        await waitForExit(timeout: .seconds(5))
    }

    /// SIGKILL and wait (bounded).
    public func kill9() async {
        signal(SIGKILL)
        await waitForExit(timeout: .seconds(5))
    }

    deinit {
        if exitStatus.value == nil { kill(pid, SIGKILL) }
    }

    private static func spawn(_ arguments: [String]) throws -> (pid_t, Int32) {
        var fds: [Int32] = [-1, -1]
        // Both ends close-on-exec from birth (a socket pair with SOCK_CLOEXEC; Glibc's module has no pipe2): a child another test spawns at the same
        // moment must not inherit the write end, or our reader would wait for its exit, not for
        // this child's (seen: openssl "timing out" while a Bumble world was being started).
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw TestSupportError("socketpair failed")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[1])
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        // The child must not inherit the test runner's blocked or ignored signals (otherwise
        // SIGTERM would not stop mosquitto): empty mask, default dispositions.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT, SIGUSR1, SIGUSR2] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let rc = posix_spawnp(&child, arguments[0], &actions, &attr, &argv, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw TestSupportError("cannot start \(arguments[0]): \(String(cString: strerror(rc)))")
        }
        return (child, fds[0])
    }

    /// Runs a command to completion without blocking a thread of the cooperative pool (tests run
    /// on it: a blocked pool starves every other test). Returns the exit code (128 + signal when
    /// killed) and the merged output; on timeout the child is killed and an error thrown.
    @discardableResult
    public static func run(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> (status: Int32, output: String) {
        let child = try ChildProcess(arguments)
        if !(await child.waitForExit(timeout: timeout)) {
            child.signal(SIGKILL)
            await child.waitForExit(timeout: .seconds(5))
            throw TestSupportError("\(arguments.joined(separator: " ")) timed out")
        }
        // The output may still be draining (bounded: a grandchild may hold the pipe open).
        _ = await child.outputClosed.wait(timeout: .seconds(5)) { $0 }
        let status = child.exitStatus.value ?? 0
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, child.output.value)
    }

    /// Runs a quick command to completion on the calling thread (blocking `poll` on its output
    /// with a deadline, then `waitpid`), returning exit code and merged output. On timeout the
    /// child is killed (SIGKILL) and an error thrown. For openssl, mosquitto_passwd, rm.
    @discardableResult
    public static func runBlocking(_ arguments: [String], timeout: Duration = .seconds(60)) throws -> (status: Int32, output: String) {
        let (child, fd) = try spawn(arguments)
        defer { close(fd) }
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var timedOut = false
        while true {
            let left = deadline - ContinuousClock.now
            let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
            if ms <= 0 { timedOut = true; break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&pfd, 1, Int32(min(ms, 60_000)))
            if n < 0 { if errno == EINTR { continue }; break }
            if n == 0 { continue }  // re-evaluate the deadline
            let r = read(fd, &buf, buf.count)
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { break }  // EOF: the child closed its output (exited)
            out.append(contentsOf: buf[0..<r])
        }
        if timedOut { kill(child, SIGKILL) }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        if timedOut { throw TestSupportError("\(arguments.joined(separator: " ")) timed out") }
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, String(decoding: out, as: UTF8.self))
    }
}
