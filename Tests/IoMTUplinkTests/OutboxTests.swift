import IoMTTestSupport
@testable import IoMTUplink
import Testing

func deliveredTags(_ evs: [MQTTEvent]) -> [UInt64] {
    evs.flatMap { if case .delivered(let tags) = $0 { return tags }; return [] }
}

func outboxRefusals(_ evs: [MQTTEvent]) -> [UInt64: RefusalReason] {
    var out: [UInt64: RefusalReason] = [:]
    for e in evs { if case .outboxRefused(let tag, let reason) = e { out[tag] = reason } }
    return out
}

func outbound(_ tags: ClosedRange<UInt64>, topic: String = "iomt/outbox", qos: MQTTQoS = .atLeastOnce) -> [OutboundMessage] {
    tags.map { OutboundMessage(tag: $0, topic: topic, payload: Array("m\($0)".utf8), qos: qos,
                               userProperties: [("reading-id", "r-\($0)")]) }
}

/// `MQTTClient.submit`: the window is refilled from the outbox on the MQTT thread.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct UplinkOutboxTests {
    @Test func everySubmittedMessageIsDeliveredOnceWithItsTagAndProperties() async throws {
        try await withBroker { broker in
            let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/#", qos: 1)
            defer { sub.stop() }
            try await withClient(try config([broker.url])) { client, rec in
                client.setOutboxWindow(8)
                // Submitted before the CONNACK too: queued until connected.
                try client.submit(outbound(1...100))
                #expect(await rec.wait { connectedCount($0) == 1 })
                try client.submit(outbound(101...300, topic: "iomt/outbox/2", qos: .exactlyOnce))
                #expect(await rec.wait { deliveredTags($0).count >= 300 })
                let tags = deliveredTags(rec.events.value)
                #expect(tags.count == 300, "each tag reported once")
                #expect(Set(tags) == Set(1...300))
                #expect(acked(rec.events.value).isEmpty, "outbox acknowledgements are reported by tag only")
                let reports = rec.events.value.filter { if case .delivered = $0 { true } else { false } }.count
                #expect(reports < 300, "reported in batches (\(reports) events)")
                let got = await sub.waitFor(count: 300, timeout: .seconds(60))
                #expect(Set(got.map(\.payloadString)) == Set((1...300).map { "m\($0)" }))
                #expect(got.first { $0.payloadString == "m7" }?.userProperty("reading-id") == "r-7")
                #expect(got.count == 300)
            }
        }
    }

    /// Pins the wake-up of the connected loop (`connectedTurn` in LoopThread.swift): once
    /// connected, the MQTT thread waits in `poll` on the socket and our wake pipe, not on
    /// libmosquitto's socket pair, so a `submit` or `publish` from another thread must ring the
    /// pipe. Here an idle turn lasts 60 s: a message that did not wake the thread would wait
    /// that long, well past each `wait`'s 15 s (no wall-clock bound on the fast path, so a
    /// loaded machine cannot fail it; without the ring it fails).
    @Test func submitAndPublishOnAnIdleConnectionWakeTheMQTTThread() async throws {
        try await withBroker { broker in
            var c = try config([broker.url])
            c.idleTurnMilliseconds = 60_000
            try await withClient(c) { client, rec in
                #expect(await rec.wait { connectedCount($0) == 1 })
                for tag in UInt64(1)...5 {
                    try client.submit(outbound(tag...tag))
                    #expect(await rec.wait { deliveredTags($0).contains(tag) }, "submitted message \(tag) not sent")
                }
                for i in 0..<5 {
                    let mid = try client.publish(topic: "iomt/idle", payload: Array("p\(i)".utf8), qos: .atLeastOnce)
                    #expect(await rec.wait { acked($0).contains(mid) }, "published message \(i) not sent")
                }
            }
        }
    }

    @Test func refusedOutboxMessageIsReportedByTagAndTheRestGoOn() async throws {
        let dir = try TempDir()
        try dir.write("acl", "topic readwrite allowed/#\n")
        try await withBroker(BrokerOptions(extraConfig: ["acl_file \(dir.file("acl"))"])) { broker in
            try await withClient(try config([broker.url])) { client, rec in
                client.setOutboxWindow(2)
                #expect(await rec.wait { connectedCount($0) == 1 })
                try client.submit(outbound(1...1, topic: "forbidden/x") + outbound(2...5, topic: "allowed/x"))
                #expect(await rec.wait { outboxRefusals($0)[1] != nil && Set(deliveredTags($0)) == [2, 3, 4, 5] })
                #expect(outboxRefusals(rec.events.value) == [1: .notAuthorized])
                #expect(!deliveredTags(rec.events.value).contains(1))
            }
        }
    }

    @Test func qos0IsNotAcceptedAndNotStartedIsRefused() async throws {
        let c = try MQTTClient(config: try config(["mqtt://127.0.0.1:1"]))
        #expect(throws: UplinkError.notRunning) { try c.submit(outbound(1...1)) }
        try c.start()
        #expect { try c.submit(outbound(1...1, qos: .atMostOnce)) } throws: { e in
            if case .publishRejected = e as? UplinkError { true } else { false }
        }
        await c.stop()
    }

    @Test func discardOutboxReturnsQueuedAndInFlightTags() async throws {
        let c = try MQTTClient(config: try config(["mqtt://127.0.0.1:1"]))  // never connects
        try c.start()
        try c.submit(outbound(1...5))
        #expect(Set(c.discardOutbox()) == Set(1...5))
        #expect(c.discardOutbox().isEmpty)
        await c.stop()
    }
}
