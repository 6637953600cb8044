import Foundation
import IoMTTestSupport
import Testing

/// The agent under the systemd notify protocol as the unit in `deploy/iomt-agent.service` runs
/// it (`Type=notify`, `WatchdogSec=`, `KillSignal=SIGTERM`), with the test standing in for
/// systemd: it binds the datagram socket named by `NOTIFY_SOCKET` (``NotifySocket``, from
/// SystemdNotifyTests.swift) and sets `WATCHDOG_USEC`. `SystemdNotifyTests` pins that READY=1,
/// a WATCHDOG=1 and STOPPING=1 arrive at all; these pin the watchdog's period, that a wedged
/// (stopped) agent stops feeding it, and what a graceful stop leaves in the buffer.
@Suite(.timeLimit(.minutes(2)))
struct SystemdLifecycleTests {
    /// One datagram and when it arrived: the kernel's receive timestamp (SO_TIMESTAMPNS), so a
    /// test thread starved of CPU on a busy machine does not distort the measured periods.
    struct Notification: Sendable {
        var at: Duration
        var text: String
        var kernelStamped = false
    }

    /// `SO_TIMESTAMPNS` (asm-generic/socket.h `SO_TIMESTAMPNS_OLD`, the same on x86-64 and arm64);
    /// its control message type has the same number.
    static let soTimestampNS: Int32 = 35

    static func enableTimestamps(_ sock: NotifySocket) {
        var on: Int32 = 1
        setsockopt(sock.fd, SOL_SOCKET, soTimestampNS, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// One datagram (non-blocking) with its kernel receive time; falls back to now without one.
    static func receiveOne(_ sock: NotifySocket) -> Notification? {
        var data = [UInt8](repeating: 0, count: 4096)
        var control = [UInt8](repeating: 0, count: 128)
        let (n, stamp): (Int, Duration?) = data.withUnsafeMutableBytes { dataBuf in
            control.withUnsafeMutableBytes { controlBuf in
                var iov = iovec(iov_base: dataBuf.baseAddress, iov_len: dataBuf.count)
                return withUnsafeMutablePointer(to: &iov) { iovPtr in
                    var msg = msghdr()
                    msg.msg_iov = iovPtr
                    msg.msg_iovlen = 1
                    msg.msg_control = controlBuf.baseAddress
                    msg.msg_controllen = controlBuf.count
                    let n = recvmsg(sock.fd, &msg, Int32(MSG_DONTWAIT))
                    guard n > 0 else { return (n, nil) }
                    // struct cmsghdr { size_t len; int level; int type; } then the data, size_t-aligned.
                    var offset = 0
                    let header = MemoryLayout<Int>.size + 8
                    while offset + header <= Int(msg.msg_controllen) {
                        let len = controlBuf.load(fromByteOffset: offset, as: Int.self)
                        let level = controlBuf.load(fromByteOffset: offset + MemoryLayout<Int>.size, as: Int32.self)
                        let type = controlBuf.load(fromByteOffset: offset + MemoryLayout<Int>.size + 4, as: Int32.self)
                        if level == SOL_SOCKET && type == soTimestampNS && len >= header + 16 {
                            let sec = controlBuf.load(fromByteOffset: offset + header, as: Int64.self)
                            let nsec = controlBuf.load(fromByteOffset: offset + header + 8, as: Int64.self)
                            return (n, .seconds(sec) + .nanoseconds(nsec))
                        }
                        guard len > 0 else { break }
                        offset += (len + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
                    }
                    return (n, nil)
                }
            }
        }
        guard n > 0 else { return nil }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Notification(at: stamp ?? .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec),
                            text: String(decoding: data[0..<n], as: UTF8.self), kernelStamped: stamp != nil)
    }

    /// Blocks in `poll` (deadline-bounded) for datagrams until `stop` matches one or `timeout` passes.
    /// `receive` off the cooperative pool (it blocks in recv for up to `timeout`).
    static func receiveAsync(_ sock: NotifySocket, timeout: Duration,
                             until stop: @escaping @Sendable (String) -> Bool = { _ in false }) async -> [Notification] {
        await offPool { receive(sock, timeout: timeout, until: stop) }
    }

    static func receive(_ sock: NotifySocket, timeout: Duration,
                        until stop: (String) -> Bool = { _ in false }) -> [Notification] {
        var out: [Notification] = []
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            let left = deadline - ContinuousClock.now
            if left <= .zero { break }
            let ms = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            var pfd = pollfd(fd: sock.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, ms)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { break }
            guard let one = receiveOne(sock) else { continue }
            out.append(one)
            if stop(one.text) { break }
        }
        return out
    }

    /// Discards every datagram already queued (non-blocking).
    static func drain(_ sock: NotifySocket) -> [String] {
        var out: [String] = []
        while let one = receiveOne(sock) { out.append(one.text) }
        return out
    }

    /// Blocks until the child has stopped (SIGSTOP took effect), without reaping it
    /// (`WNOWAIT`; the ChildProcess thread still collects the exit later).
    static func waitUntilStopped(_ pid: pid_t) -> Bool {
        var info = siginfo_t()
        while true {
            let rc = waitid(P_PID, id_t(pid), &info, WSTOPPED | WNOWAIT)
            if rc == 0 { return true }
            if errno != EINTR { return false }
        }
    }

    /// A broker URL nobody listens on: every reading stays in the buffer.
    static func unreachableBroker() throws -> String { "mqtt://127.0.0.1:\(try freeLoopbackPort())" }

    static func startAgent(dir: TempDir, sock: NotifySocket, watchdogUSec: Int, setup: AgentSetup,
                           extraBuffer: String = "") throws -> ChildProcess {
        var yaml = setup.yaml()
        if !extraBuffer.isEmpty { yaml = yaml.replacingOccurrences(of: "buffer:\n", with: "buffer:\n\(extraBuffer)") }
        try dir.write("agent.yaml", yaml)
        return try ChildProcess(["/usr/bin/env", "NOTIFY_SOCKET=\(sock.path)", "WATCHDOG_USEC=\(watchdogUSec)",
                                 agentBinary, "run", "--config", dir.file("agent.yaml")])
    }

    @Test func watchdogIsFedAtHalfTheIntervalAndNeverLate() async throws {
        let dir = try TempDir()
        let sock = try NotifySocket(path: dir.file("notify.sock"))
        Self.enableTimestamps(sock)
        var setup = AgentSetup(gateway: "wd-period", stateDir: dir.file("state"), brokerURL: try Self.unreachableBroker())
        setup.simulators = [Sim(id: "ox-1", rate: 20)]
        let agent = try Self.startAgent(dir: dir, sock: sock, watchdogUSec: 1_000_000, setup: setup)
        defer { agent.signal(SIGKILL) }

        let ready = await Self.receiveAsync(sock, timeout: .seconds(20)) { $0.contains("READY=1") }
        try #require(ready.last?.text.contains("READY=1") == true, "no READY=1: \(ready.map(\.text)) \(agent.output.value)")
        let pings = await Self.receiveAsync(sock, timeout: .milliseconds(3600)).filter { $0.text.contains("WATCHDOG=1") }
        // WATCHDOG_USEC=1 s: the agent pings every 500 ms; systemd would kill it after 1 s of silence.
        // At least 4 (7 expected): the window opens at READY, and on a loaded 2-core CI machine the
        // first ping may come late; the hard guarantee is the gap check below (never 1 s of silence).
        #expect(pings.count >= 4, "\(pings.count) pings in 3.6 s at a 500 ms period")
        #expect(pings.allSatisfy { $0.kernelStamped }, "no SO_TIMESTAMPNS receive time: periods measured with our own clock")
        let gaps = zip(pings.dropFirst(), pings).map { $0.at - $1.at }
        let late = gaps.filter { $0 >= .seconds(1) }
        #expect(late.isEmpty, "a ping came later than WATCHDOG_USEC after the previous one: \(gaps)")
        let early = gaps.filter { $0 < .milliseconds(300) }
        #expect(early.isEmpty, "pings closer than the period: \(gaps)")
        if !gaps.isEmpty {
            let mean = gaps.reduce(Duration.zero, +) / gaps.count
            #expect(mean >= .milliseconds(450) && mean <= .milliseconds(750), "mean period \(mean), expected ~500 ms")
        }
        await agent.terminate()
    }

    @Test func aStoppedAgentStopsFeedingTheWatchdogAndResumesOnContinue() async throws {
        let dir = try TempDir()
        let sock = try NotifySocket(path: dir.file("notify.sock"))
        Self.enableTimestamps(sock)
        var setup = AgentSetup(gateway: "wd-wedge", stateDir: dir.file("state"), brokerURL: try Self.unreachableBroker())
        setup.simulators = [Sim(id: "th-1", profile: "thermometer", rate: 10)]
        let agent = try Self.startAgent(dir: dir, sock: sock, watchdogUSec: 600_000, setup: setup)
        defer { agent.signal(SIGCONT); agent.signal(SIGKILL) }

        let first = await Self.receiveAsync(sock, timeout: .seconds(20)) { $0.contains("WATCHDOG=1") }
        try #require(first.contains { $0.text.contains("WATCHDOG=1") }, "no watchdog ping: \(first.map(\.text)) \(agent.output.value)")

        agent.signal(SIGSTOP)
        #expect(await offPool { Self.waitUntilStopped(agent.pid) }, "waitid(WSTOPPED) failed: \(errno)")
        _ = Self.drain(sock)  // sent before the stop took effect
        // Two whole WATCHDOG_USEC intervals (systemd would have killed it after one).
        let whileStopped = await Self.receiveAsync(sock, timeout: .milliseconds(1200))
        #expect(whileStopped.isEmpty, "a stopped agent notified: \(whileStopped.map(\.text))")

        agent.signal(SIGCONT)
        let resumed = await Self.receiveAsync(sock, timeout: .seconds(5)) { $0.contains("WATCHDOG=1") }
        #expect(resumed.contains { $0.text.contains("WATCHDOG=1") }, "no ping after SIGCONT: \(resumed.map(\.text))")
        #expect(agent.isRunning, "the agent died while stopped: \(agent.output.value)")
        await agent.terminate()
    }

    /// SIGTERM (the unit's KillSignal) while readings wait for their group commit
    /// (`commit_max_delay_ms: 1000`, so nearly always one per device is pending): STOPPING=1,
    /// exit status 0 well within the unit's TimeoutStopSec=20, and every reading the agent
    /// sequenced is in the buffer with no hole and no loss (the last commit was flushed), the
    /// WAL checkpointed into the database file, and a restart delivers all of them to a broker.
    @Test func sigtermFlushesTheLastCommitAndExitsCleanly() async throws {
        let dir = try TempDir()
        let sock = try NotifySocket(path: dir.file("notify.sock"))
        Self.enableTimestamps(sock)
        let devices = ["ox-1", "ox-2", "ox-3"]
        var setup = AgentSetup(gateway: "graceful", stateDir: dir.file("state"), brokerURL: try Self.unreachableBroker())
        setup.simulators = devices.map { Sim(id: $0, rate: 25) }
        let agent = try Self.startAgent(dir: dir, sock: sock, watchdogUSec: 2_000_000, setup: setup,
                                        extraBuffer: "  commit_max_delay_ms: 1000\n")
        defer { agent.signal(SIGKILL) }

        let ready = await Self.receiveAsync(sock, timeout: .seconds(20)) { $0.contains("READY=1") }
        try #require(ready.last?.text.contains("READY=1") == true, "no READY=1: \(agent.output.value)")
        // Let a few commits happen, then stop in the middle of a commit window.
        _ = await Self.receiveAsync(sock, timeout: .milliseconds(2500))
        let stopAt = ContinuousClock.now
        agent.signal(SIGTERM)
        let stopping = await Self.receiveAsync(sock, timeout: .seconds(10)) { $0.contains("STOPPING=1") }
        #expect(stopping.contains { $0.text.contains("STOPPING=1") }, "no STOPPING=1: \(stopping.map(\.text))")
        #expect(await agent.waitForExit(timeout: .seconds(15)), "still running 15 s after SIGTERM")
        let took = ContinuousClock.now - stopAt
        #expect(took < .seconds(10), "graceful stop took \(took) (the unit allows 20 s)")
        #expect(agent.exitStatus.value == 0, "exit status \(String(describing: agent.exitStatus.value)): \(agent.output.value)")

        // What the buffer holds after the stop.
        let db = dir.file("state/buffer.db")
        let wal = (try? FileManager.default.attributesOfItem(atPath: db + "-wal")[.size] as? Int) ?? 0
        #expect(wal == 0, "WAL not checkpointed on close: \(wal) bytes left in buffer.db-wal")
        let integrity = try await ChildProcess.run(["sqlite3", db, "PRAGMA integrity_check;"])
        #expect(integrity.output.trimmingCharacters(in: .whitespacesAndNewlines) == "ok", "\(integrity.output)")
        let rows = try await ChildProcess.run(["sqlite3", "-separator", " ", db, """
            SELECT m.device_id, COUNT(*), MIN(m.sequence), MAX(m.sequence), s.last_sequence
            FROM \(try bufferMessagesTable(db)) m JOIN device_state s ON s.device_id = m.device_id
            WHERE m.device_id IS NOT NULL GROUP BY m.device_id ORDER BY m.device_id;
            SELECT 'gaps', COUNT(*) FROM gaps;
            """])
        #expect(rows.status == 0, "\(rows.output)")
        var perDevice: [String: Int] = [:]
        for line in rows.output.split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            if f.first == "gaps" {
                #expect(f.last == "0", "readings were lost: \(line)")
                continue
            }
            guard f.count == 5, let count = Int(f[1]), let minSeq = Int(f[2]), let maxSeq = Int(f[3]),
                  let last = Int(f[4]) else { Issue.record("unexpected row \(line)"); continue }
            #expect(minSeq == 1 && maxSeq == count, "\(f[0]): rows \(count), sequences \(minSeq)...\(maxSeq): a hole")
            #expect(last == maxSeq, "\(f[0]): device_state says \(last) sequenced, rows end at \(maxSeq)")
            perDevice[f[0]] = count
        }
        #expect(Set(perDevice.keys) == Set(devices), "\(rows.output)")
        let total = perDevice.values.reduce(0, +)
        #expect(perDevice.values.allSatisfy { $0 >= 2 }, "too few readings to mean anything: \(perDevice)")
        #expect(agent.output.value.contains("still_buffered=\(total)"),
                "the agent's last log line disagrees with the file (\(total) rows): \(agent.output.value.suffix(400))")

        // Restart against a broker: everything that was committed arrives, each sequence once or more.
        let broker = try await MosquittoBroker.start()
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/graceful/readings/#")
        defer { sub.stop(); broker.killNow() }
        var drain = AgentSetup(gateway: "graceful", stateDir: dir.file("state"), brokerURL: broker.url)
        drain.simulators = []
        let second = try drain.start(in: dir, name: "drain.yaml", exitWhenDrained: true)
        defer { second.signal(SIGKILL) }
        #expect(await waitUntil(sub, timeout: .seconds(30)) { Set(readings($0).map { "\($0.device)#\($0.sequence)" }).count >= total },
                "not every buffered reading arrived after the restart")
        #expect(await second.waitForExit(timeout: .seconds(20)), "the drain run did not exit: \(second.output.value)")
        let seen = readings(sub.messages)
        for device in devices {
            let maxSeq = expectNoLossAndRecognisableDuplicates(seen, device: device)
            #expect(maxSeq == perDevice[device], "\(device): delivered up to \(maxSeq), buffered \(perDevice[device] ?? -1)")
        }
    }
}
