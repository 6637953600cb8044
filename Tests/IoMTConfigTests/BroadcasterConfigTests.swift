import Foundation
import Testing
@testable import IoMTConfig

@Suite struct BroadcasterConfigTests {
    let head = """
        gateway:
          id: hub-001
        broker:
          url: mqtt://127.0.0.1:1883
        bluetooth:
          adapter: hci0
          devices:
            - address: F0:F1:F2:F3:F4:01
              profile: heart-rate
              patient: P-1
        """

    @Test func broadcastersParseWithDefaults() throws {
        let c = try parseValid(head + """

              broadcasters:
                - address: f0:f1:f2:f3:f4:10
                  patient: P-1001
                  profile: /etc/iomt-agent/profiles/scale.yaml
                - id: thermo-anywhere
                  any_address: true
                  patient: P-1002
                  profile: /etc/iomt-agent/profiles/thermo.yaml
                  repeat_window_s: 5
            """)
        let b = try #require(c.bluetooth?.broadcasters)
        #expect(b.count == 2)
        #expect(b[0] == .init(id: "ble-f0f1f2f3f410", address: "F0:F1:F2:F3:F4:10", anyAddress: false, patient: "P-1001",
                              profile: "/etc/iomt-agent/profiles/scale.yaml", repeatWindowSeconds: 30))
        #expect(b[1].id == "thermo-anywhere" && b[1].address == nil && b[1].anyAddress && b[1].repeatWindowSeconds == 5)
        #expect(c.renderSummary().contains("thermo-anywhere: broadcaster, patient P-1002, any address"))
    }

    @Test func anAddresslessBroadcasterIsRefusedUnlessAnyAddressIsExplicit() {
        let e = problems(head + """

              broadcasters:
                - id: scale
                  patient: P-1001
                  profile: /p/scale.yaml
                - id: scale2
                  any_address: false
                  patient: P-1001
                  profile: /p/scale.yaml
            """)
        #expect(problem(e, at: "bluetooth.broadcasters[0].address")?.message.contains("neighbour") == true)
        #expect(problem(e, at: "bluetooth.broadcasters[1].address")?.message.contains("any_address: true") == true)
    }

    @Test func everyBadValueHasItsKeyPath() {
        let e = problems(head + """

              broadcasters:
                - address: F0:F1:F2:F3:F4:1
                  patient: P-1
                  profile: relative/scale.yaml
                  repeat_window_s: 0
                  colour: red
                - address: F0:F1:F2:F3:F4:01
                  any_address: true
                  patient: P-2
                  profile: /p.yaml
                - any_address: yes
                  profile: /p.yaml
                  id: "bad id"
                - just a string
            """)
        #expect(problem(e, at: "bluetooth.broadcasters[0].address")?.line == 12)
        #expect(problem(e, at: "bluetooth.broadcasters[0].profile")?.message.contains("absolute path") == true)
        #expect(problem(e, at: "bluetooth.broadcasters[0].repeat_window_s")?.message.contains("between 1 and 3600") == true)
        #expect(problem(e, at: "bluetooth.broadcasters[0].colour")?.line == 16)
        // The same id as a configured wearable, and an address with any_address.
        #expect(problem(e, at: "bluetooth.broadcasters[1].id")?.message.contains("duplicate device id 'ble-f0f1f2f3f401'") == true)
        #expect(problem(e, at: "bluetooth.broadcasters[1].any_address")?.message.contains("must not be true") == true)
        #expect(problem(e, at: "bluetooth.broadcasters[2].any_address")?.message.contains("true or false") == true)
        #expect(problem(e, at: "bluetooth.broadcasters[2].patient")?.message.contains("is required") == true)
        #expect(problem(e, at: "bluetooth.broadcasters[2].id") != nil)
        #expect(problem(e, at: "bluetooth.broadcasters[3]")?.message.contains("must be a mapping") == true)
    }

    @Test func broadcastersMustBeAList() {
        let e = problems(head + "\n  broadcasters: {address: \"F0:F1:F2:F3:F4:10\"}\n")
        #expect(problem(e, at: "bluetooth.broadcasters")?.message.contains("must be a list") == true)
    }

    // MARK: The profile file

    @Test func shippedScaleProfileParses() throws {
        let path = repositoryRoot.appendingPathComponent("deploy/profiles/weight-scale-advert.yaml").path
        let d = try AdvertisementProfileDocument.load(path: path)
        #expect(d.name == "weight-scale-advert")
        #expect(d.source == .serviceData(uuid16: 0x181D))
        #expect(d.require == [.init(offset: 0, mask: 0xA0, equals: 0x20)])
        #expect(d.fields.map(\.name) == ["weight-kg", "weight-lb"])
        #expect(d.fields[0].encoding == .u16le && d.fields[0].scale == 0.005 && d.fields[0].mdc == 188736 && d.fields[0].unit == "kg")
        #expect(d.fields[0].when == [.init(offset: 0, mask: 0x11, equals: 0x00)])
        #expect(d.fields[1].unit == "[lb_av]" && d.fields[1].scale == 0.01)
    }

    @Test func manufacturerDataProfileWithEveryKey() throws {
        let d = try AdvertisementProfileDocument.parse(yaml: """
            name: thermo-x
            source: {manufacturer_data: "0x0157"}
            fields:
              - name: temp
                offset: 2
                encoding: s16be
                scale: 0.1
                offset_value: -40
                mdc: 150364
                unit: Cel
                invalid_raw: [0x7FFF, -1, 32768]
                when: [{offset: 0, mask: 3, equals: 0x02}]
            """, source: "t.yaml")
        #expect(d.source == .manufacturerData(companyID: 0x0157))
        #expect(d.require.isEmpty)
        #expect(d.fields == [.init(name: "temp", offset: 2, encoding: .s16be, scale: 0.1, offsetValue: -40, mdc: 150364, unit: "Cel",
                                   invalidRaw: [0x7FFF, -1, 32768], when: [.init(offset: 0, mask: 3, equals: 2)])])
    }

    @Test func profileProblemsHaveLineAndKeyPath() {
        let yaml = """
            name: bad name
            source: {service_data: "18D", manufacturer_data: "0157"}
            require:
              - {offset: 0, mask: 0x01, equals: 0x03}
              - {offset: 300, mask: 256}
            fields:
              - {name: w, offset: 1, encoding: u17, mdc: 0, unit: "k g", scale: 0}
              - {name: w, encoding: u8, unit: kg, invalid_raw: [x], when: {offset: 0}, colour: 1}
            extra: 1
            """
        let e: ConfigErrors
        do {
            _ = try AdvertisementProfileDocument.parse(yaml: yaml, source: "p.yaml")
            Issue.record("parsed")
            return
        } catch { e = error }
        func at(_ path: String) -> ConfigProblem? { e.problems.first { $0.keyPath == path } }
        #expect(at("name")?.line == 1)
        #expect(at("source")?.message.contains("exactly one") == true)
        #expect(at("require[0].equals")?.message.contains("outside mask 0x01") == true)
        #expect(at("require[1].offset")?.message.contains("between 0 and 255") == true)
        #expect(at("require[1].mask")?.message.contains("octet") == true)
        #expect(at("require[1].equals")?.message.contains("is required") == true)
        #expect(at("fields[0].encoding")?.message.contains("must be one of u8, s8") == true)
        #expect(at("fields[0].mdc")?.message.contains("between 1 and") == true)
        #expect(at("fields[0].unit")?.message.contains("without spaces") == true)
        #expect(at("fields[0].scale")?.message.contains("non-zero") == true)
        #expect(at("fields[1].name")?.message.contains("duplicate field name 'w'") == true)
        #expect(at("fields[1].offset")?.message.contains("is required") == true)
        #expect(at("fields[1].mdc")?.message.contains("is required") == true)
        #expect(at("fields[1].invalid_raw[0]")?.line == 8)
        #expect(at("fields[1].when")?.message.contains("must be a list") == true)
        #expect(at("fields[1].colour") != nil)
        #expect(at("extra")?.line == 9)
        #expect(e.description.contains("p.yaml:"))
    }

    @Test func sourceAndFieldsAreRequired() {
        do {
            _ = try AdvertisementProfileDocument.parse(yaml: "name: x\n", source: "p.yaml")
            Issue.record("parsed")
        } catch {
            #expect(error.problems.first { $0.keyPath == "source" }?.message.contains("is required") == true)
            #expect(error.problems.first { $0.keyPath == "fields" }?.message.contains("at least one field") == true)
        }
        do {
            _ = try AdvertisementProfileDocument.parse(yaml: "name: x\nsource: {service_data: 181Z}\nfields: []\n", source: "p.yaml")
            Issue.record("parsed")
        } catch {
            #expect(error.problems.first { $0.keyPath == "source.service_data" }?.message.contains("4 hex digits") == true)
            #expect(error.problems.first { $0.keyPath == "fields" } != nil)
        }
    }

    @Test func loadReadsTheProfilesOfBroadcastersAndReportsTheirProblems() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bcast-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = dir.appendingPathComponent("good.yaml").path
        let bad = dir.appendingPathComponent("bad.yaml").path
        try "name: g\nsource: {service_data: \"181D\"}\nfields: [{name: w, offset: 1, encoding: u16le, mdc: 188736, unit: kg}]\n"
            .write(toFile: good, atomically: true, encoding: .utf8)
        try "name: b\nsource: {service_data: \"181D\"}\nfields: [{name: w, offset: 1, encoding: u16le, mdc: 188736}]\n"
            .write(toFile: bad, atomically: true, encoding: .utf8)
        func config(_ profile: String) -> String {
            minimalYAML + "\nbluetooth:\n  adapter: hci0\n  broadcasters:\n    - {address: \"F0:F1:F2:F3:F4:10\", patient: P-1, profile: \(profile)}\n"
        }
        let okPath = dir.appendingPathComponent("ok.yaml").path
        try config(good).write(toFile: okPath, atomically: true, encoding: .utf8)
        let loaded = try AgentConfig.load(path: okPath)
        #expect(loaded.bluetooth?.broadcasters.first?.profileDocument?.name == "g")
        let badPath = dir.appendingPathComponent("nok.yaml").path
        try config(bad).write(toFile: badPath, atomically: true, encoding: .utf8)
        do {
            _ = try AgentConfig.load(path: badPath)
            Issue.record("loaded")
        } catch {
            #expect(error.problems.contains { $0.source == bad && $0.keyPath == "fields[0].unit" })
        }
    }

    @Test func encodingsAreTheDecodersOnes() {
        // The agent maps these by raw value onto AdvertisementProfile.Encoding (IoMTHealthProfiles).
        #expect(AdvertisedEncoding.allCases.map(\.rawValue)
                == ["u8", "s8", "u16le", "u16be", "s16le", "s16be", "u24le", "u32le", "u32be", "s32le", "sfloat", "float"])
    }
}
