import Foundation
@testable import IoMTAgent
import IoMTBuffer
import IoMTConfig
import IoMTCore
import IoMTSerial
import IoMTSerialPort
import IoMTSerialSimulators
import Logging
import Testing

/// Issue 4 end to end, short of MQTT: simulated devices on pseudo-terminals → `makeSerialSources`
/// → the real `Ingestor` → the real SQLite buffer; what is stored is compared with what the
/// simulators sent (the agent's `Agent.makeSources` does not run serial sources yet).
@Suite(.serialized) struct SerialEndToEndTests {
    @Test func ptyDevicesThroughIngestorIntoTheBuffer() async throws {
        let dir = NSTemporaryDirectory() + "iomt-serial-e2e-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/dev", withIntermediateDirectories: true)
        let contec = try PtyDevice(), nonin = try PtyDevice()
        try contec.link(at: dir + "/dev/oximeter-1")
        try nonin.link(at: dir + "/dev/oximeter-2")
        let p1 = PtyPlayer(ContecV7Simulator(spo2: 96, pulse: 66), on: contec)
        let p2 = PtyPlayer(NoninDF2Simulator(hr: 58, spo2: 99, faults: Faults(startupNoise: [0x01, 0x80, 0xFF], corruptEvery: 4)), on: nonin)

        let config = try AgentConfig.parse(yaml: """
            gateway: {id: hub-e2e}
            state_dir: \(dir)/state
            broker: {url: "mqtt://127.0.0.1:1883"}
            serial:
              - {id: ox-1, profile: contec-cms50-v7, patient: P-1, port: \(dir)/dev/oximeter-1}
              - {id: ox-2, profile: nonin-df2, patient: P-2, port: \(dir)/dev/oximeter-2}
            """, source: "e2e.yaml")
        var logger = Logger(label: "e2e")
        logger.logLevel = .warning
        let topics = Topics(prefix: "iomt/hub-e2e")
        let buffer = try await SQLiteBuffer(path: dir + "/buffer.db", maxBytes: 64 << 20, onFull: .reject,
                                            gatewayID: "hub-e2e", gapTopic: topics.gaps, logger: logger)
        let ingestor = Ingestor(store: buffer, settings: .init(gatewayID: "hub-e2e", topics: topics, maxDelay: .milliseconds(10), maxBatch: 64),
                                logger: logger, initialSequences: [:], onCommitted: {})
        let commits = Task { await ingestor.run() }
        let sources = makeSerialSources(config: config, clock: SystemWallClock(), logger: logger)
        let running = Task {
            await withTaskGroup(of: Void.self) { group in
                for s in sources { group.addTask { try? await s.run(into: ingestor) } }
            }
        }
        let deadline = ContinuousClock.now + .seconds(40)
        while await ingestor.acceptedCount < 6, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        running.cancel()
        await running.value
        commits.cancel()
        await commits.value
        p1.stop(); p2.stop()
        contec.unplug(); nonin.unplug()

        let stored = try await buffer.lease(limit: 1000)
        await buffer.close()
        #expect(stored.count >= 6)
        var sequences: [String: [Int]] = [:]
        for m in stored {
            let json = try #require(try JSONSerialization.jsonObject(with: Data(m.message.payload)) as? [String: Any])
            let device = try #require(json["device"] as? [String: Any])
            let id = try #require(device["id"] as? String)
            #expect(device["transport"] as? String == "serial")
            sequences[id, default: []].append(try #require(json["sequence"] as? Int))
            let observations = try #require(json["observations"] as? [[String: Any]])
            func value(_ mdc: Int) -> Double? { observations.first { $0["mdc_code"] as? Int == mdc }?["value"] as? Double }
            func samples(_ mdc: Int) -> Int? { (observations.first { $0["mdc_code"] as? Int == mdc }?["samples"] as? [Any])?.count }
            switch id {
            case "ox-1":
                #expect(value(150456) == 96 && value(149530) == 66)
                #expect(samples(150452) == 60)
                #expect(json["patient_id"] as? String == "P-1")
            case "ox-2":
                #expect(value(150456) == 99 && value(149530) == 58)
                #expect(samples(150452) == 75)
                #expect(json["patient_id"] as? String == "P-2")
            default:
                Issue.record("unexpected device \(id)")
            }
        }
        // Every reading accepted is stored, numbered 1, 2, 3... per device: nothing lost or doubled.
        for (id, seqs) in sequences { #expect(seqs.sorted() == Array(1...seqs.count), "\(id)") }
        #expect(Set(sequences.keys) == ["ox-1", "ox-2"])
    }
}
