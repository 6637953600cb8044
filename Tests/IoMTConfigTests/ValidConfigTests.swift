import Foundation
import Testing
@testable import IoMTConfig

@Suite struct ValidConfigTests {
    @Test func minimalConfigGetsEveryDefault() throws {
        let c = try parseValid(minimalYAML)
        #expect(c.gateway.id == "hub-001")
        #expect(c.stateDir == "/var/lib/iomt-agent")
        #expect(c.log.level == .info)
        #expect(c.broker.endpoints == [BrokerEndpoint(tls: false, host: "127.0.0.1", port: 1883)])
        #expect(c.broker.clientID == "iomt-hub-001")
        #expect(c.broker.protocolVersion == .mqtt5)
        #expect(c.broker.username == nil)
        #expect(c.broker.passwordFile == nil)
        #expect(c.broker.caFile == nil)
        #expect(c.broker.clientCertificate == nil)
        #expect(c.broker.qos == .atLeastOnce)
        #expect(c.broker.topicPrefix == "iomt/hub-001")
        #expect(c.broker.keepAliveSeconds == 30)
        #expect(c.broker.sessionExpirySeconds == 86_400)
        #expect(c.broker.inflightWindow == 64)
        #expect(c.broker.reconnectMinMilliseconds == 500)
        #expect(c.broker.reconnectMaxMilliseconds == 60_000)
        #expect(c.broker.statusIntervalSeconds == 30)
        #expect(c.buffer.maxBytes == 256 * 1024 * 1024)
        #expect(c.buffer.onFull == .reject)
        #expect(c.buffer.order == .fifo)
        #expect(c.buffer.backlogShare == 0.25)
        #expect(c.buffer.commitMaxDelayMilliseconds == 0)
        #expect(c.buffer.commitMaxBatch == 256)
        #expect(c.output.format == .json)
        #expect(c.simulators.isEmpty)
        // The same as the memberwise defaults.
        let built = AgentConfig(gateway: .init(id: "hub-001"),
                                broker: .init(endpoints: [BrokerEndpoint(tls: false, host: "127.0.0.1")],
                                              gatewayID: "hub-001"))
        #expect(c == built)
    }

    @Test func emptySectionsAndNullValuesMeanDefaults() throws {
        let c = try parseValid(minimalYAML + """

            log:
            buffer:
              on_full: ~
            simulators:
            """)
        #expect(c.log.level == .info)
        #expect(c.buffer.onFull == .reject)
        #expect(c.simulators.isEmpty)
    }

    @Test func fullConfigRoundTripsEveryKey() throws {
        let yaml = """
            gateway:
              id: ward7.bed-12_a
            state_dir: /data/iomt
            log:
              level: debug
            broker:
              url:
                - mqtts://mqtt-a.example.org
                - mqtts://[fd00::10]:9883
                - mqtts://10.0.0.5:8884
              client_id: custom-client
              protocol: mqtt311
              username: gw
              password_file: /etc/iomt-agent/broker.password
              ca_file: /etc/iomt-agent/ca.pem
              cert_file: /etc/iomt-agent/gw.crt
              key_file: /etc/iomt-agent/gw.key
              qos: 2
              topic_prefix: hospital/ward7/gw
              keepalive_s: 3600
              session_expiry_s: 4294967295
              inflight_window: 65535
              reconnect_min_ms: 10
              reconnect_max_ms: 3600000
              status_interval_s: 86400
            buffer:
              max_bytes: 2GB
              on_full: drop-oldest
              order: live-first
              backlog_share: 0.5
              commit_max_delay_ms: 5
              commit_max_batch: 10000
            output:
              format: json
            simulators:
              - profile: pulse-oximeter
                patient: P-1001
                rate: 1000
                count: 5
                id: ox-1
                seed: 18446744073709551615
              - profile: blood-pressure
                patient: "0042"
                rate: 0.01
              - profile: thermometer
                patient: P-1003
                rate: 2.5
                seed: 0
            """
        let c = try parseValid(yaml)
        #expect(c.gateway.id == "ward7.bed-12_a")
        #expect(c.stateDir == "/data/iomt")
        #expect(c.log.level == .debug)
        #expect(c.broker.endpoints == [
            BrokerEndpoint(tls: true, host: "mqtt-a.example.org", port: 8883),
            BrokerEndpoint(tls: true, host: "fd00::10", port: 9883),
            BrokerEndpoint(tls: true, host: "10.0.0.5", port: 8884),
        ])
        #expect(c.broker.clientID == "custom-client")
        #expect(c.broker.protocolVersion == .mqtt311)
        #expect(c.broker.username == "gw")
        #expect(c.broker.passwordFile == "/etc/iomt-agent/broker.password")
        #expect(c.broker.caFile == "/etc/iomt-agent/ca.pem")
        #expect(c.broker.clientCertificate == .init(certFile: "/etc/iomt-agent/gw.crt", keyFile: "/etc/iomt-agent/gw.key"))
        #expect(c.broker.qos == .exactlyOnce)
        #expect(c.broker.topicPrefix == "hospital/ward7/gw")
        #expect(c.broker.keepAliveSeconds == 3600)
        #expect(c.broker.sessionExpirySeconds == UInt32.max)
        #expect(c.broker.inflightWindow == 65535)
        #expect(c.broker.reconnectMinMilliseconds == 10)
        #expect(c.broker.reconnectMaxMilliseconds == 3_600_000)
        #expect(c.broker.statusIntervalSeconds == 86400)
        #expect(c.buffer.maxBytes == 2_000_000_000)
        #expect(c.buffer.onFull == .dropOldest)
        #expect(c.buffer.order == .liveFirst)
        #expect(c.buffer.backlogShare == 0.5)
        #expect(c.buffer.commitMaxDelayMilliseconds == 5)
        #expect(c.buffer.commitMaxBatch == 10000)
        #expect(c.output.format == .json)
        #expect(c.simulators == [
            .init(id: "ox-1", profile: .pulseOximeter, patient: "P-1001", rate: 1000, count: 5, seed: UInt64.max),
            .init(id: "sim-blood-pressure-2", profile: .bloodPressure, patient: "0042", rate: 0.01, count: nil, seed: 2),
            .init(id: "sim-thermometer-3", profile: .thermometer, patient: "P-1003", rate: 2.5, count: nil, seed: 0),
        ])
    }

    @Test func singleURLStringWithIPv6AndDefaultTLSPort() throws {
        let c = try parseValid("""
            gateway: {id: g}
            broker: {url: "mqtt://[::1]"}
            """)
        #expect(c.broker.endpoints == [BrokerEndpoint(tls: false, host: "::1", port: 1883)])
        #expect(c.broker.endpoints[0].description == "mqtt://[::1]:1883")
    }

    @Test func deployExampleParsesWithEveryKeyCommented() throws {
        let path = repositoryRoot.appendingPathComponent("deploy/agent.yaml").path
        let c: AgentConfig
        do {
            c = try AgentConfig.load(path: path)
        } catch {
            Issue.record("deploy/agent.yaml:\n\(error.description)")
            return
        }
        #expect(c.gateway.id == "ward7-bed12")
        #expect(c.broker.endpoints.count == 2)
        let allTLS = c.broker.endpoints.allSatisfy { $0.tls }
        #expect(allTLS)
        #expect(c.broker.passwordFile == "/etc/iomt-agent/broker.password")
        #expect(c.buffer.maxBytes == 1 << 30)
        // Every key line is directly preceded by a comment line documenting it.
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        var undocumented: [String] = []
        for (i, line) in lines.enumerated() {
            let t = line.drop { $0 == " " }
            guard !t.isEmpty, !t.hasPrefix("#"), !t.hasPrefix("-") else { continue }
            if i == 0 || !lines[i - 1].drop(while: { $0 == " " }).hasPrefix("#") { undocumented.append(String(t)) }
        }
        #expect(undocumented.isEmpty, "keys without a comment: \(undocumented)")
        // And every known key appears in it.
        let text = lines.joined(separator: "\n")
        for key in Keys.broker + Keys.buffer + Keys.top + Keys.simulator {
            #expect(text.contains("\(key):"), "deploy/agent.yaml does not mention \(key)")
        }
    }

    @Test func demoConfigurationParses() throws {
        let c = try AgentConfig.parse(yaml: AgentConfig.demoYAML, source: "<demo>")
        #expect(c.stateDir == "./run/state")
        #expect(c.broker.endpoints == [BrokerEndpoint(tls: false, host: "127.0.0.1", port: 1883)])
        #expect(Set(c.simulators.map(\.profile)) == [.pulseOximeter, .bloodPressure, .thermometer])

        let moved = try AgentConfig.demoDefault(stateDir: "/tmp/x/state", brokerPort: 18830)
        #expect(moved.stateDir == "/tmp/x/state")
        #expect(moved.broker.endpoints == [BrokerEndpoint(tls: false, host: "127.0.0.1", port: 18830)])
        #expect(moved.simulators == c.simulators)
        let standard = try AgentConfig.demoDefault()
        #expect(standard == c)

        #expect(throws: ConfigErrors.self) { try AgentConfig.demoDefault(brokerPort: 70000) }
    }

    @Test func summaryShowsEffectiveValues() throws {
        let c = try parseValid(minimalYAML + """

            simulators:
              - {profile: thermometer, patient: P-9, rate: 0.5, count: 3}
            """)
        let s = c.renderSummary()
        #expect(s.contains("id: hub-001"))
        #expect(s.contains("url: mqtt://127.0.0.1:1883"))
        #expect(s.contains("client_id: iomt-hub-001"))
        #expect(s.contains("topic_prefix: iomt/hub-001"))
        #expect(s.contains("max_bytes: 256MiB"))
        #expect(s.contains("sim-thermometer-1: thermometer, patient P-9, 0.5/s, 3 readings, seed 1"))
    }
}
