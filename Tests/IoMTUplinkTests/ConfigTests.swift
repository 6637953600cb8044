@testable import IoMTUplink
import Testing

@Suite struct BrokerAddressTests {
    @Test func defaultPorts() throws {
        #expect(try BrokerAddress(parsing: "mqtt://broker.local") == BrokerAddress(host: "broker.local", port: 1883, tls: false))
        #expect(try BrokerAddress(parsing: "mqtts://broker.local") == BrokerAddress(host: "broker.local", port: 8883, tls: true))
        #expect(try BrokerAddress(parsing: "mqtts://10.0.0.1:9000") == BrokerAddress(host: "10.0.0.1", port: 9000, tls: true))
        #expect(try BrokerAddress(parsing: "mqtt://[::1]:1884") == BrokerAddress(host: "::1", port: 1884, tls: false))
    }

    @Test func rejectsBadURLs() {
        #expect(throws: UplinkError.self) { try BrokerAddress(parsing: "http://x:1883") }
        #expect(throws: UplinkError.self) { try BrokerAddress(parsing: "mqtt://x:0") }
        #expect(throws: UplinkError.self) { try BrokerAddress(parsing: "mqtt://:1883") }
        #expect(throws: UplinkError.self) { try BrokerAddress(parsing: "mqtt://x:99999") }
    }

    @Test func rejectsMixedSchemes() throws {
        let c = try UplinkConfig(brokerURLs: ["mqtt://a", "mqtts://b"], clientID: "x")
        #expect(throws: UplinkError.self) { try MQTTClient(config: c) }
    }

    @Test func publishBeforeStartFails() throws {
        let client = try MQTTClient(config: UplinkConfig(brokerURLs: ["mqtt://127.0.0.1:1"], clientID: "x"))
        #expect(throws: UplinkError.notRunning) { _ = try client.publish(topic: "t", payload: [1]) }
    }
}

@Test func configDescriptionRedactsThePassword() throws {
    var c = try UplinkConfig(brokerURLs: ["mqtt://a"], clientID: "x")
    c.password = "s3cret-pw"
    #expect(!"\(c)".contains("s3cret-pw"))
    #expect(!String(reflecting: c).contains("s3cret-pw"))
}

@Test func backoffIsFullJitterWithinBounds() {
    let lo = Duration.milliseconds(100), hi = Duration.seconds(5)
    #expect(backoffDelay(failures: 0, min: lo, max: hi) == lo)
    var seen: [Duration] = []
    for _ in 0..<200 {
        let d = backoffDelay(failures: 3, min: lo, max: hi)  // 100 ms ... 800 ms
        #expect(d >= lo && d <= .milliseconds(800))
        seen.append(d)
    }
    #expect(Set(seen).count > 100)  // jittered, not a constant
    for _ in 0..<50 {
        let d = backoffDelay(failures: 40, min: lo, max: hi)
        #expect(d >= lo && d <= hi)
    }
}
