import Foundation
import IoMTTestSupport
import Testing
@testable import IoMTAgent

/// A unix datagram socket standing in for systemd's notification socket (no systemd here).
final class NotifySocket: Sendable {
    let path: String
    let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket failed") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw TestSupportError("bind \(path) failed") }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Datagrams received until `stop` matches one or `timeout` passes (blocking reads, 200 ms each).
    func receive(until stop: (String) -> Bool, timeout: Duration) -> [String] {
        var out: [String] = []
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var buf = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            let text = String(decoding: buf[0..<n], as: UTF8.self)
            out.append(text)
            if stop(text) { break }
        }
        return out
    }

    deinit { close(fd); unlink(path) }
}

@Suite(.timeLimit(.minutes(1)))
struct SystemdNotifyTests {
    @Test func readyWatchdogAndStoppingReachTheNotifySocket() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let sock = try NotifySocket(path: dir.file("notify.sock"))
        var setup = AgentSetup(gateway: "notify", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.simulators = [Sim(id: "th-1", profile: "thermometer", rate: 10)]
        try dir.write("agent.yaml", setup.yaml())
        let agent = try ChildProcess(["/usr/bin/env", "NOTIFY_SOCKET=\(sock.path)", "WATCHDOG_USEC=300000",
                                      agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }

        let first = sock.receive(until: { $0.contains("WATCHDOG=1") }, timeout: .seconds(15))
        #expect(first.first?.contains("READY=1") == true, "READY=1 first: \(first) \(agent.output.value)")
        #expect(first.contains { $0.contains("WATCHDOG=1") }, "watchdog pings at half WATCHDOG_USEC")
        agent.signal(SIGTERM)
        let rest = sock.receive(until: { $0.contains("STOPPING=1") }, timeout: .seconds(10))
        #expect(rest.contains { $0.contains("STOPPING=1") }, "STOPPING=1 on a graceful stop: \(rest)")
        #expect(await agent.waitForExit(timeout: .seconds(10)))
    }

    @Test func withoutNotifySocketNothingIsSentAndNoWatchdog() {
        let n = SystemdNotifier(environment: [:])
        #expect(!n.isActive)
        #expect(!n.notify("READY=1"))
        #expect(n.watchdogInterval == nil)
        let other = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"])
        #expect(other.watchdogInterval == nil, "a watchdog meant for another process is ignored")
        let mine = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000"])
        #expect(mine.watchdogInterval == .milliseconds(500))
    }
}
