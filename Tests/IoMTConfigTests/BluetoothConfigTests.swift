import Testing
@testable import IoMTConfig

/// The `bluetooth:` section (issue 5).
@Suite struct BluetoothConfigTests {
    @Test func adapterDevicesAndDefaults() throws {
        let c = try parseValid(minimalYAML + """

            bluetooth:
              adapter: tcp:127.0.0.1:9001
              snoop: /var/lib/iomt-agent/hci.btsnoop
              devices:
                - address: f0:f1:f2:f3:f4:01
                  profile: heart-rate
                  patient: P-1
                - id: thermo-bed-4
                  address: C0:00:00:00:00:02
                  address_type: public
                  profile: thermometer
                  patient: P-2
            """)
        let b = try #require(c.bluetooth)
        #expect(b.adapter == "tcp:127.0.0.1:9001")
        #expect(b.snoop == "/var/lib/iomt-agent/hci.btsnoop")
        #expect(b.connectTimeoutMilliseconds == 10_000 && b.reconnectMinMilliseconds == 1_000 && b.reconnectMaxMilliseconds == 30_000)
        #expect(b.devices == [
            .init(id: "ble-f0f1f2f3f401", address: "F0:F1:F2:F3:F4:01", addressType: .random, profile: .heartRate, patient: "P-1"),
            .init(id: "thermo-bed-4", address: "C0:00:00:00:00:02", addressType: .public, profile: .thermometer, patient: "P-2"),
        ])
        #expect(c.renderSummary().contains("  - thermo-bed-4: thermometer, patient P-2, C0:00:00:00:00:02 (public)"))
        #expect(try parseValid(minimalYAML).bluetooth == nil)
    }

    @Test func everyBadValueIsReportedWithItsKeyPath() {
        let e = problems(minimalYAML + """

            bluetooth:
              adapter: bluetooth0
              snoop: relative.btsnoop
              reconnect_min_ms: 5000
              reconnect_max_ms: 1000
              devices:
                - address: F0:F1:F2:F3:F4
                  profile: glucose-meter
                  patient: P-1
                - address: F0:F1:F2:F3:F4:01
                  profile: heart-rate
                - address: F0:F1:F2:F3:F4:01
                  profile: heart-rate
                  patient: P-1
                  colour: red
            """)
        #expect(problem(e, at: "bluetooth.adapter")?.message.contains("hciN") == true)
        #expect(problem(e, at: "bluetooth.snoop")?.message.contains("absolute") == true)
        #expect(problem(e, at: "bluetooth.reconnect_max_ms") != nil)
        #expect(problem(e, at: "bluetooth.devices[0].address")?.message.contains("F0:F1:F2:F3:F4:01") == true)
        #expect(problem(e, at: "bluetooth.devices[0].profile") != nil)
        #expect(problem(e, at: "bluetooth.devices[1].patient") != nil)
        #expect(problem(e, at: "bluetooth.devices[2].colour") != nil)
    }

    @Test func glucoseIsABluetoothProfileAndGlucoseMeterIsNot() throws {
        let c = try parseValid(minimalYAML + """

            bluetooth:
              adapter: tcp:127.0.0.1:9001
              devices:
                - {id: gl-1, address: "F0:F1:F2:F3:F4:11", profile: glucose, patient: P-9}
            """)
        #expect(c.bluetooth?.devices.first?.profile == .glucose)
        #expect(BluetoothProfileName(rawValue: "glucose") == .glucose)
        let e = problems(minimalYAML + """

            bluetooth:
              adapter: tcp:127.0.0.1:9001
              devices:
                - {address: "F0:F1:F2:F3:F4:11", profile: glucose-meter, patient: P-9}
            """)
        #expect(problem(e, at: "bluetooth.devices[0].profile")?.message.contains("body-composition, cgm, generic-health-sensor, glucose") == true)
    }

    @Test func adapterForms() {
        #expect(ConfigReader.adapterProblem("hci0") == nil)
        #expect(ConfigReader.adapterProblem("hci12") == nil)
        #expect(ConfigReader.adapterProblem("uart:/dev/ttyAMA0?baud=3000000&flow=rts") == nil)
        #expect(ConfigReader.adapterProblem("tcp:127.0.0.1:1234") == nil)
        #expect(ConfigReader.adapterProblem("tcp:127.0.0.1") != nil)
        #expect(ConfigReader.adapterProblem("tcp::1234") != nil)
        #expect(ConfigReader.adapterProblem("hcix") != nil)
    }
}

/// `output.units` (issue 6: units converted only when the configuration asks).
@Suite struct OutputUnitsConfigTests {
    @Test func unitsAreValidatedAndDefaultToNone() throws {
        #expect(try parseValid(minimalYAML).output.units.isEmpty)
        let c = try parseValid(minimalYAML + "\noutput:\n  units: [\"mm[Hg]\", Cel, kg]\n")
        #expect(c.output.units == ["mm[Hg]", "Cel", "kg"])
        let e = problems(minimalYAML + "\noutput:\n  units: [\"mm[Hg]\", kPa, furlong]\n")
        let messages = e.problems.filter { $0.keyPath == "output.units" }.map(\.message)
        #expect(messages.contains { $0.contains("same quantity") })
        #expect(messages.contains { $0.contains("furlong") })
        #expect(problem(problems(minimalYAML + "\noutput:\n  units: mm\n"), at: "output.units") != nil)
    }
}
