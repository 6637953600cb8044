import Crypto
import Foundation
import IoMTCore
@testable import IoMTBuffer

/// A fresh directory under the system temp dir; removed by `remove()`.
struct TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("iomt-buffer-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    func remove() { try? FileManager.default.removeItem(at: url) }
    func files() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? [] }
}

/// A fixed clock for deterministic gap timestamps.
struct FixedClock: WallClock {
    var ms: Int64 = 1_764_093_159_000
    func now() -> Timestamp { Timestamp(millisecondsSinceEpoch: ms) }
}

let testGateway = "gw-test"
let gapTopic = "iomt/gw-test/gaps"

func openBuffer(_ path: String, maxBytes: Int64 = 64 << 20, onFull: OnFullPolicy = .reject,
                key: SymmetricKey? = nil) async throws -> SQLiteBuffer {
    try await SQLiteBuffer(path: path, maxBytes: maxBytes, onFull: onFull, gatewayID: testGateway,
                           gapTopic: gapTopic, logger: nil, clock: FixedClock(), sealingKey: key)
}

/// A fixed at-rest key for tests (32 bytes), and another one.
let testKey = SymmetricKey(data: [UInt8](repeating: 0x5A, count: 32))
let otherKey = SymmetricKey(data: [UInt8](repeating: 0xC3, count: 32))

/// Builds reading messages with distinct ids.
struct MessageFactory {
    var ids = ReadingIDGenerator()
    var time: Int64 = 1_764_093_000_000

    mutating func reading(_ device: String, _ seq: UInt64, payloadSize: Int = 100, priority: UInt8 = 0,
                          kind: MessageKind = .reading) -> OutgoingMessage {
        time += 1
        let at = Timestamp(millisecondsSinceEpoch: time)
        var payload = Array("{\"device\":\"\(device)\",\"seq\":\(seq)}".utf8)
        if payload.count < payloadSize { payload += Array(repeating: UInt8(ascii: " "), count: payloadSize - payload.count) }
        return OutgoingMessage(id: ids.next(at: at), kind: kind, topic: "iomt/\(testGateway)/\(device)/reading",
                               payload: payload, deviceID: device, sequence: seq, priority: priority, createdAt: at)
    }

    mutating func readings(_ device: String, _ seqs: ClosedRange<UInt64>, payloadSize: Int = 100) -> [OutgoingMessage] {
        seqs.map { reading(device, $0, payloadSize: payloadSize) }
    }
}

func seqs(_ leased: [StoredMessage]) -> [UInt64] { leased.compactMap { $0.message.kind == .gap ? nil : $0.message.sequence } }

/// Decodes a rendered gap record payload.
func gapJSON(_ m: StoredMessage) throws -> [String: Any] {
    let obj = try JSONSerialization.jsonObject(with: Data(m.message.payload))
    return obj as? [String: Any] ?? [:]
}

/// Runs a command, returns (status, combined output).
@discardableResult
func sh(_ command: String) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}
