import Foundation
import IoMTTestSupport
import Testing

/// The repository root and the agent binary (IoMTTestSupport.TestPaths).
let repoRoot = TestPaths.repositoryRoot
let agentBinary = TestPaths.agentBinary

/// One simulated device of a test configuration.
struct Sim {
    var id: String
    var profile = "pulse-oximeter"
    var patient = "P-TEST-1"
    var rate: Double
    var count: Int?
}

/// Writes an agent configuration for a test.
struct AgentSetup {
    var gateway: String
    var stateDir: String
    var brokerURL: String
    var simulators: [Sim] = []
    var qos = 1
    var order = "fifo"
    var maxBytes = "16MiB"
    var onFull = "reject"
    var window = 64
    var extraBroker: [String] = []
    var format = "json"

    var prefix: String { "iomt/\(gateway)" }

    func yaml() -> String {
        var lines = [
            "gateway:", "  id: \(gateway)",
            "state_dir: \(stateDir)",
            "log:", "  level: info",
            "broker:", "  url: \(brokerURL)", "  qos: \(qos)", "  inflight_window: \(window)",
            "  reconnect_min_ms: 100", "  reconnect_max_ms: 1000", "  status_interval_s: 1", "  keepalive_s: 5",
        ]
        lines += extraBroker.map { "  \($0)" }
        lines += ["buffer:", "  max_bytes: \(maxBytes)", "  on_full: \(onFull)", "  order: \(order)"]
        lines += ["output:", "  format: \(format)"]
        if simulators.isEmpty {
            lines.append("simulators: []")
        } else {
            lines.append("simulators:")
            for s in simulators {
                lines += ["  - id: \(s.id)", "    profile: \(s.profile)", "    patient: \(s.patient)", "    rate: \(s.rate)"]
                if let c = s.count { lines.append("    count: \(c)") }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Starts `iomt-agent run` on this configuration as a child process.
    func start(in dir: TempDir, name: String = "agent.yaml", exitWhenDrained: Bool = false) throws -> ChildProcess {
        try dir.write(name, yaml())
        var args = [agentBinary, "run", "--config", dir.file(name)]
        if exitWhenDrained { args.append("--exit-when-drained") }
        return try ChildProcess(args)
    }
}

/// A reading as received by the test subscriber.
struct SeenReading: Equatable {
    var id: String
    var device: String
    var sequence: Int
    var backlog: Bool
    var payload: String
}

struct SeenGap: Equatable {
    var id: String
    var device: String
    var first: Int
    var last: Int
    var count: Int
    var reason: String
}

func json(_ m: ReceivedMessage) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(m.payload))) as? [String: Any]
}

func readings(_ messages: [ReceivedMessage]) -> [SeenReading] {
    messages.compactMap { m in
        guard m.topic.contains("/readings/"), let o = json(m), let id = o["id"] as? String,
              let device = (o["device"] as? [String: Any])?["id"] as? String, let seq = o["sequence"] as? Int
        else { return nil }
        return SeenReading(id: id, device: device, sequence: seq, backlog: o["backlog"] as? Bool ?? false,
                           payload: m.payloadString)
    }
}

func gaps(_ messages: [ReceivedMessage]) -> [SeenGap] {
    messages.compactMap { m in
        guard m.topic.hasSuffix("/status/gaps"), let o = json(m), let id = o["id"] as? String,
              let device = o["device_id"] as? String, let first = o["first_sequence"] as? Int,
              let last = o["last_sequence"] as? Int, let count = o["count"] as? Int, let reason = o["reason"] as? String
        else { return nil }
        return SeenGap(id: id, device: device, first: first, last: last, count: count, reason: reason)
    }
}

/// Checks the at-least-once contract for one device: every sequence number from 1 to the
/// highest seen arrived, and every copy of one sequence number carries the same id.
/// Returns the highest sequence number.
@discardableResult
func expectNoLossAndRecognisableDuplicates(_ seen: [SeenReading], device: String,
                                           sourceLocation: SourceLocation = #_sourceLocation) -> Int {
    let mine = seen.filter { $0.device == device }
    var idsBySequence: [Int: Set<String>] = [:]
    for r in mine { idsBySequence[r.sequence, default: []].insert(r.id) }
    let maxSeq = idsBySequence.keys.max() ?? 0
    let missing = (1...max(maxSeq, 1)).filter { idsBySequence[$0] == nil }
    #expect(maxSeq > 0, "no reading of \(device) arrived", sourceLocation: sourceLocation)
    #expect(missing.isEmpty, "\(device): sequence numbers never delivered: \(missing.prefix(20))", sourceLocation: sourceLocation)
    let conflicting = idsBySequence.filter { $0.value.count > 1 }.keys.sorted()
    #expect(conflicting.isEmpty, "\(device): one sequence number with different ids: \(conflicting.prefix(10))",
            sourceLocation: sourceLocation)
    // Ids are unique across sequence numbers too.
    let ids = Set(mine.map(\.id))
    #expect(ids.count == idsBySequence.count, "\(device): an id was reused", sourceLocation: sourceLocation)
    return maxSeq
}

/// Validates JSON documents with `scripts/validate_json.py` (jsonschema from `.venv`, made by
/// `scripts/setup.sh`).
func expectValid(_ documents: [String], schema: String, dir: TempDir,
                 sourceLocation: SourceLocation = #_sourceLocation) async throws {
    #expect(!documents.isEmpty, "nothing to validate against \(schema)", sourceLocation: sourceLocation)
    let file = dir.file("docs-\(schema).jsonl")
    try documents.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
    let python = "\(repoRoot)/.venv/bin/python"
    #expect(FileManager.default.isExecutableFile(atPath: python),
            "\(python) is missing: run scripts/setup.sh", sourceLocation: sourceLocation)
    let result = try await ChildProcess.run([python, "\(repoRoot)/scripts/validate_json.py", "\(repoRoot)/schemas/\(schema)", file])
    #expect(result.status == 0, "schema \(schema): \(result.output)", sourceLocation: sourceLocation)
}

/// Validates FHIR R4 documents with `scripts/validate_fhir.py` (fhir.resources R4 models in `.venv`).
func expectValidFHIR(_ documents: [String], dir: TempDir, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    #expect(!documents.isEmpty, "no FHIR documents", sourceLocation: sourceLocation)
    let file = dir.file("fhir.jsonl")
    try documents.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
    let result = try await ChildProcess.run(["\(repoRoot)/.venv/bin/python", "\(repoRoot)/scripts/validate_fhir.py", file])
    #expect(result.status == 0, "FHIR validation: \(result.output)", sourceLocation: sourceLocation)
}

/// Waits (bounded) until `condition` holds for the subscriber's messages.
func waitUntil(_ subscriber: MQTTTestSubscriber, timeout: Duration = .seconds(30),
               _ condition: @escaping @Sendable ([ReceivedMessage]) -> Bool) async -> Bool {
    // Event-driven: each turn blocks until one more message arrives (or the deadline passes).
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while true {
        let messages = subscriber.messages
        if condition(messages) { return true }
        let left = deadline - ContinuousClock.now
        if left <= .zero { return false }
        await subscriber.waitFor(count: messages.count + 1, timeout: left)
    }
}
