import Testing
@testable import IoMTConfig

@Suite struct ValueParsingTests {
    @Test(arguments: [
        ("mqtt://127.0.0.1", false, "127.0.0.1", 1883),
        ("mqtts://broker.example.org", true, "broker.example.org", 8883),
        ("MQTTS://broker:9999/", true, "broker", 9999),
        ("mqtt://[::1]:1883", false, "::1", 1883),
        ("mqtts://[fd00::10]", true, "fd00::10", 8883),
    ])
    func brokerEndpointParses(url: String, tls: Bool, host: String, port: Int) throws {
        let e = try BrokerEndpoint(parsing: url)
        #expect(e == BrokerEndpoint(tls: tls, host: host, port: port))
        #expect(try BrokerEndpoint(parsing: e.description) == e)
    }

    @Test(arguments: [
        ("broker:1883", "missing '://'"),
        ("tcp://broker", "unsupported scheme 'tcp'"),
        ("ssl://broker", "for TLS use mqtts://"),
        ("mqtt://", "missing host"),
        ("mqtt://a b", "invalid host"),
        ("mqtt://::1:1883", "IPv6 addresses in brackets"),
        ("mqtt://[::1", "closing ']'"),
        ("mqtt://[zz]:1", "not an IPv6 address"),
        ("mqtt://h/path", "path is not allowed"),
        ("mqtt://h?x=1", "query"),
        ("mqtt://u:p@h", "credentials"),
    ])
    func brokerEndpointRejects(url: String, words: String) {
        #expect {
            _ = try BrokerEndpoint(parsing: url)
        } throws: { error in
            (error as? BrokerEndpoint.ParseError)?.message.contains(words) == true
        }
    }

    @Test(arguments: [
        ("65536", Int64(65536)), ("64KiB", 65536), ("256MiB", 268_435_456), ("1 GiB", 1 << 30),
        ("2TiB", 2 << 40), ("5KB", 5000), ("3MB", 3_000_000), ("1GB", 1_000_000_000), ("7B", 7),
        ("1_048_576", 1_048_576),
    ])
    func byteSizeParses(text: String, bytes: Int64) {
        #expect(ByteSize.parse(text) == bytes)
    }

    @Test(arguments: ["", "MiB", "12 kib", "1.5GiB", "-1", "10 MiB extra", "9999999999999TiB", "_1"])
    func byteSizeRejects(text: String) {
        #expect(ByteSize.parse(text) == nil)
    }

    @Test func byteSizeFormats() {
        #expect(ByteSize.format(256 << 20) == "256MiB")
        #expect(ByteSize.format(1 << 30) == "1GiB")
        #expect(ByteSize.format(1000) == "1000B")
        #expect(ByteSize.format(1536) == "3KiB" || ByteSize.format(1536) == "1536B")
    }

    @Test func editDistanceSuggestions() {
        #expect(editDistance("qso", "qos") == 1)
        #expect(closest("qso", among: Keys.broker) == "qos")
        #expect(closest("clientId", among: Keys.broker) == "client_id")
        #expect(closest("zzz", among: Keys.broker) == nil)
    }
}
