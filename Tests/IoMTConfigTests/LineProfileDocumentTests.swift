import Foundation
import Testing
@testable import IoMTConfig

@Suite struct LineProfileDocumentTests {
    @Test func shippedMasimoProfileParses() throws {
        let path = repositoryRoot.appendingPathComponent("deploy/profiles/masimo-ascii1.yaml").path
        let d = try LineProfileDocument.load(path: path)
        #expect(d.name == "masimo-ascii1-line")
        #expect(d.baud == 9600 && d.parity == .none && d.stopBits == 1 && d.dataBits == 8)
        #expect(d.maxLineLength == 400)
        #expect(d.fields.map(\.capture) == ["spo2", "bpm", "pi", "exc", "alarm"])
        #expect(d.fields[0].kind == .measurement(mdc: 150456, unit: "%", scale: 1, min: 1, max: 100))
        guard case .flags(16, let bits) = d.fields[3].kind else { Issue.record("exc is not flags"); return }
        #expect(bits[0] == LineProfileDocument.Bit(mask: 0x21, condition: "sensor-off", status: "sensor-off"))
        #expect(bits[3].status == nil)
    }

    @Test func problemsHaveLineAndKeyPath() throws {
        let yaml = """
            name: thermo
            line: {baud: 9601, parity: mark}
            pattern: 'T=(?<t>[0-9]+)'
            fields:
              t: {mdc: 150364, unit: Cel, scale: 0, min: 45, max: 25, offset: 1}
              w: {mdc: 188736, unit: kg}
              f:
                flags: 16
                bits:
                  - {mask: 0, condition: sensor-off}
            extra: 1
            """
        let e: ConfigErrors
        do {
            _ = try LineProfileDocument.parse(yaml: yaml, source: "p.yaml")
            Issue.record("parsed")
            return
        } catch { e = error }
        func at(_ path: String) -> ConfigProblem? { e.problems.first { $0.keyPath == path } }
        #expect(at("line.baud")?.line == 2)
        #expect(at("line.parity")?.line == 2)
        #expect(at("fields.t.scale")?.message.contains("non-zero") == true)
        #expect(at("fields.t.max")?.message.contains("at least min") == true)
        #expect(at("fields.t.offset")?.line == 5)
        #expect(at("fields.w")?.message.contains("no named capture (?<w>") == true)
        #expect(at("fields.f")?.message.contains("no named capture") == true)
        #expect(at("fields.f.bits[0].mask")?.line == 10)
        #expect(at("extra")?.line == 11)
        #expect(e.description.contains("p.yaml:"))
    }

    @Test func badPatternAndNoMeasurement() throws {
        do {
            _ = try LineProfileDocument.parse(yaml: "name: x\nline: {baud: 9600}\npattern: '(?<t>[0-9'\nfields: {}\n", source: "p.yaml")
            Issue.record("parsed")
        } catch {
            #expect(error.problems.first { $0.keyPath == "pattern" }?.message == "is not a valid regular expression")
            #expect(error.problems.first { $0.keyPath == "fields" }?.message.contains("at least one measurement") == true)
        }
    }

    @Test func serialEntryWithLineProfile() throws {
        let dir = NSTemporaryDirectory() + "iomt-lp-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let good = dir + "/good.yaml", bad = dir + "/bad.yaml", config = dir + "/agent.yaml"
        try FileManager.default.copyItem(atPath: repositoryRoot.appendingPathComponent("deploy/profiles/masimo-ascii1.yaml").path, toPath: good)
        try "name: bad\nline: {baud: 9600}\npattern: 'x'\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let yaml = minimalYAML + """

            serial:
              - profile: line
                line_profile: \(good)
                patient: P-1
                port: /dev/iomt/rad8
            """
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let c = try AgentConfig.load(path: config)
        #expect(c.serial[0].profile == .line)
        #expect(c.serial[0].lineProfileDocument?.name == "masimo-ascii1-line")
        #expect(try AgentConfig.parse(yaml: yaml, source: "a").serial[0].lineProfileDocument == nil)

        try yaml.replacingOccurrences(of: good, with: bad).write(toFile: config, atomically: true, encoding: .utf8)
        do {
            _ = try AgentConfig.load(path: config)
            Issue.record("loaded")
        } catch {
            #expect(error.problems.first?.source == bad)
            #expect(error.problems.first?.keyPath == "fields")
        }

        let missing = problems(minimalYAML + "\nserial:\n  - profile: line\n    patient: P\n    port: /dev/x\n")
        #expect(problem(missing, at: "serial[0].line_profile")?.message.contains("is required") == true)
        let notLine = problems(minimalYAML + "\nserial:\n  - profile: nonin-df2\n    patient: P\n    port: /dev/x\n    line_profile: /a.yaml\n")
        #expect(problem(notLine, at: "serial[0].line_profile")?.line == 9)
    }
}
