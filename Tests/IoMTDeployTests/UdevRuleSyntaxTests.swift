import Foundation
import IoMTTestSupport
import Testing

/// One `KEY{attr}OP"value"` of a udev rule line.
struct UdevToken: Equatable {
    var key: String
    var attribute: String?
    var op: String
    var value: String
}

struct UdevParseError: Error, CustomStringConvertible {
    var description: String
}

/// A udev rules file parsed the way udev(7) describes it: one rule a line (backslash joins
/// lines), comments from `#`, comma-separated `KEY[{attr}] OP "value"` pairs with double-quoted
/// values (backslash escapes inside).
enum UdevRules {
    static let operators = ["==", "!=", "+=", "-=", ":=", "="]

    /// Rule lines with their first line numbers.
    static func lines(_ text: String) -> [(line: Int, text: String)] {
        var out: [(Int, String)] = []
        var pending: (Int, String)?
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = raw.trimmingCharacters(in: .whitespaces)
            if pending == nil && (trimmed.isEmpty || trimmed.hasPrefix("#")) { continue }
            var current = pending ?? (i + 1, "")
            if trimmed.hasSuffix("\\") {
                current.1 += trimmed.dropLast() + " "
                pending = current
                continue
            }
            current.1 += trimmed
            pending = nil
            out.append(current)
        }
        if let pending { out.append(pending) }
        return out
    }

    static func parse(_ line: String) throws(UdevParseError) -> [UdevToken] {
        let chars = Array(line)
        var i = 0
        var tokens: [UdevToken] = []
        func skipSpaces() { while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 } }
        while true {
            skipSpaces()
            if i >= chars.count { break }
            var key = ""
            while i < chars.count, chars[i].isLetter || chars[i].isNumber || chars[i] == "_" { key.append(chars[i]); i += 1 }
            guard !key.isEmpty else { throw UdevParseError(description: "expected a key at column \(i + 1): \(line)") }
            var attribute: String?
            if i < chars.count && chars[i] == "{" {
                i += 1
                var attr = ""
                while i < chars.count && chars[i] != "}" { attr.append(chars[i]); i += 1 }
                guard i < chars.count else { throw UdevParseError(description: "unterminated {} after \(key): \(line)") }
                i += 1
                attribute = attr
            }
            skipSpaces()
            guard let op = operators.first(where: { op in
                i + op.count <= chars.count && String(chars[i..<(i + op.count)]) == op
            }) else { throw UdevParseError(description: "no operator after \(key) at column \(i + 1): \(line)") }
            i += op.count
            skipSpaces()
            guard i < chars.count && chars[i] == "\"" else {
                throw UdevParseError(description: "the value of \(key) is not double-quoted: \(line)")
            }
            i += 1
            var value = ""
            var closed = false
            while i < chars.count {
                if chars[i] == "\\" && i + 1 < chars.count { value.append(chars[i]); value.append(chars[i + 1]); i += 2; continue }
                if chars[i] == "\"" { closed = true; i += 1; break }
                value.append(chars[i]); i += 1
            }
            guard closed else { throw UdevParseError(description: "unterminated value of \(key): \(line)") }
            tokens.append(UdevToken(key: key, attribute: attribute, op: op, value: value))
            skipSpaces()
            if i >= chars.count { break }
            guard chars[i] == "," else { throw UdevParseError(description: "expected ',' at column \(i + 1): \(line)") }
            i += 1
        }
        return tokens
    }

    enum Attribute { case none, required, optional }

    /// udev(7): every key, whether it takes `{attr}`, and the operators it accepts. Match keys
    /// take only `==`/`!=`; assignment keys only assignments; a few keys are both. PROGRAM and
    /// IMPORT are matches conventionally written with `=` (udev treats `=` as a match there).
    static let keys: [String: (attribute: Attribute, ops: Set<String>)] = {
        let match: Set<String> = ["==", "!="]
        let assignAll: Set<String> = ["=", "+=", "-=", ":="]
        var k: [String: (Attribute, Set<String>)] = [:]
        for key in ["ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER", "DRIVERS",
                    "TAGS", "RESULT"] { k[key] = (.none, match) }
        k["ATTRS"] = (.required, match)
        k["CONST"] = (.required, match)
        k["TEST"] = (.optional, match)
        k["PROGRAM"] = (.none, match.union(["="]))
        k["IMPORT"] = (.required, match.union(["="]))
        // Both match and assignment.
        k["NAME"] = (.none, match.union(["=", ":="]))
        k["SYMLINK"] = (.none, match.union(assignAll))
        k["TAG"] = (.none, match.union(assignAll))
        k["ENV"] = (.required, match.union(assignAll))
        k["ATTR"] = (.required, match.union(["=", ":="]))
        k["SYSCTL"] = (.required, match.union(["=", ":="]))
        // Assignment only.
        for key in ["OWNER", "GROUP", "MODE"] { k[key] = (.none, ["=", ":="]) }
        k["SECLABEL"] = (.required, ["=", "+=", ":="])
        k["RUN"] = (.optional, ["=", "+=", ":="])
        k["OPTIONS"] = (.none, ["=", "+=", ":="])
        k["LABEL"] = (.none, ["="])
        k["GOTO"] = (.none, ["="])
        return k
    }()

    /// Every problem of one file (empty when it is valid).
    static func problems(in text: String, file: String) -> [String] {
        var problems: [String] = []
        var labels: Set<String> = []
        var gotos: [(Int, String)] = []
        for (number, line) in lines(text) {
            let tokens: [UdevToken]
            do { tokens = try parse(line) } catch { problems.append("\(file):\(number): \(error)"); continue }
            if tokens.isEmpty { problems.append("\(file):\(number): empty rule"); continue }
            for t in tokens {
                guard let rule = keys[t.key] else { problems.append("\(file):\(number): unknown key \(t.key)"); continue }
                switch (rule.attribute, t.attribute) {
                case (.none, .some): problems.append("\(file):\(number): \(t.key) takes no {attribute}")
                case (.required, .none): problems.append("\(file):\(number): \(t.key) needs an {attribute}")
                case (.required, .some(let a)) where a.isEmpty: problems.append("\(file):\(number): \(t.key){} is empty")
                default: break
                }
                if !rule.ops.contains(t.op) {
                    problems.append("\(file):\(number): \(t.key) with operator \(t.op) (allowed: \(rule.ops.sorted()))")
                }
                if t.key == "LABEL" { labels.insert(t.value) }
                if t.key == "GOTO" { gotos.append((number, t.value)) }
                if t.key == "MODE", !(t.value.count == 4 && t.value.allSatisfy { "01234567".contains($0) }) {
                    problems.append("\(file):\(number): MODE \(t.value) is not four octal digits")
                }
            }
            // A rule made only of assignments to LABEL is fine; otherwise a rule that assigns
            // nothing and jumps nowhere does nothing.
            let acts = tokens.contains { ["=", "+=", "-=", ":="].contains($0.op) }
            if !acts { problems.append("\(file):\(number): a rule without any assignment has no effect") }
        }
        for (number, target) in gotos where !labels.contains(target) {
            problems.append("\(file):\(number): GOTO \(target) has no LABEL in this file")
        }
        return problems
    }
}

@Suite(.timeLimit(.minutes(1)))
struct UdevRuleSyntaxTests {
    static let dir = "\(repoRoot)/udev"

    static func ruleFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir)
            .filter { $0.hasSuffix(".rules") || $0.hasSuffix(".rules.example") }.sorted()
    }

    @Test func everyRuleLineOfEveryFileUsesKnownKeysAndOperators() async throws {
        let files = try Self.ruleFiles()
        #expect(files.contains("70-iomt-serial.rules") && files.contains("72-iomt-bluetooth.rules"), "\(files)")
        var ruleCount = 0
        for file in files {
            let text = try readText("\(Self.dir)/\(file)")
            ruleCount += UdevRules.lines(text).count
            let problems = UdevRules.problems(in: text, file: file)
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        }
        #expect(ruleCount >= 15, "only \(ruleCount) rule lines: is the parser skipping them?")
    }

    @Test func theCheckerRejectsWhatUdevWouldReject() async throws {
        let cases: [(String, String)] = [
            (#"SUBSYSTEM="tty", GROUP="iomt""#, "SUBSYSTEM with operator ="),
            (#"SUBSYSTEM=="tty", GROUP=="iomt""#, "GROUP with operator =="),
            (#"SUBSYSTEMS=="usb", ATTRS{idVendor}="10c4", MODE="0660""#, "ATTRS with operator ="),
            (#"KERNEL=="ttyUSB*", GRUOP="iomt""#, "unknown key GRUOP"),
            (#"KERNEL=="ttyUSB*", ENV="1""#, "ENV needs an {attribute}"),
            (#"KERNEL{x}=="ttyUSB*", MODE="0660""#, "KERNEL takes no {attribute}"),
            (#"KERNEL=="ttyUSB*", MODE=0660"#, "not double-quoted"),
            (#"KERNEL=="ttyUSB*" MODE="0660""#, "expected ','"),
            (#"KERNEL=="ttyUSB*", MODE="660""#, "not four octal digits"),
            (#"KERNEL=="ttyUSB*", MODE="0660"#, "unterminated value"),
            (#"KERNEL=="ttyUSB*", GOTO="nowhere""#, "GOTO nowhere has no LABEL"),
            (#"KERNEL=="ttyUSB*", SUBSYSTEM=="tty""#, "without any assignment"),
            (#"KERNEL=="ttyUSB*", LABEL:="x""#, "LABEL with operator :="),
        ]
        for (rule, expected) in cases {
            let problems = UdevRules.problems(in: rule + "\n", file: "t.rules")
            #expect(problems.contains { $0.contains(expected) }, "\(rule): \(problems)")
        }
        // And accepts the forms udev documents.
        let good = """
            ACTION=="remove", GOTO="end"
            SUBSYSTEM=="tty", ATTRS{idVendor}=="10c4", ENV{ID_MM_DEVICE_IGNORE}="1", \\
              GROUP="iomt", MODE="0660", SYMLINK+="iomt/x-$env{ID_SERIAL_SHORT}", TAG+="systemd"
            IMPORT{builtin}="usb_id", PROGRAM="/bin/true", RUN+="/bin/true", OPTIONS+="link_priority=10"
            ATTR{power/control}="on", TEST{0644}=="/sys/x", ENV{A}!="b", SYMLINK-="old"
            LABEL="end"
            """
        #expect(UdevRules.problems(in: good, file: "good.rules").isEmpty, "\(UdevRules.problems(in: good, file: "good.rules"))")
        #expect(UdevRules.lines(good).count == 5, "continuation lines are joined")
    }

    @Test func serialAndBluetoothRulesGiveGroupIomtAndKeepModemManagerAway() async throws {
        for file in try Self.ruleFiles() {
            let text = try readText("\(Self.dir)/\(file)")
            for (number, line) in UdevRules.lines(text) {
                let tokens = try UdevRules.parse(line)
                let assignsGroup = tokens.contains { $0.key == "GROUP" }
                if tokens.contains(where: { $0.key == "SUBSYSTEM" && $0.op == "==" && $0.value == "tty" })
                    || (file.contains("serial") && tokens.contains { $0.key == "ATTRS" }) {
                    // Every serial device rule: ModemManager ignores it, group iomt, 0660.
                    #expect(tokens.contains(UdevToken(key: "ENV", attribute: "ID_MM_DEVICE_IGNORE", op: "=", value: "1")),
                            "\(file):\(number) without ID_MM_DEVICE_IGNORE")
                }
                if assignsGroup {
                    #expect(tokens.contains(UdevToken(key: "GROUP", attribute: nil, op: "=", value: "iomt")), "\(file):\(number)")
                    #expect(tokens.contains(UdevToken(key: "MODE", attribute: nil, op: "=", value: "0660")), "\(file):\(number)")
                }
            }
        }
        let bt = try readText("\(Self.dir)/72-iomt-bluetooth.rules")
        let btTokens = try UdevRules.lines(bt).flatMap { try UdevRules.parse($0.text) }
        #expect(btTokens.contains(UdevToken(key: "ATTR", attribute: "bDeviceClass", op: "!=", value: "e0")))
        #expect(btTokens.contains(UdevToken(key: "ATTR", attribute: "power/control", op: "=", value: "on")), "autosuspend off")
        #expect(btTokens.contains { $0.key == "SYMLINK" && $0.op == "+=" && $0.value.hasPrefix("iomt/bluetooth/") })
        // Sorted after the serial rules and before ModemManager's 77-mm-*.
        #expect("70-iomt-serial.rules" < "72-iomt-bluetooth.rules" && "72-iomt-bluetooth.rules" < "77-mm-usb-device-blacklist.rules")
    }

    @Test func udevadmVerifyWhenAvailable() async throws {
        guard let udevadm = which("udevadm") else {
            print("SKIP udevadm verify: udevadm is not installed here (Debian package udev)")
            return
        }
        let help = try await sh([udevadm, "verify", "--help"])
        guard help.status == 0 else {
            print("SKIP udevadm verify: this udevadm has no verify command (it needs systemd 254 or newer): \(help.output.prefix(200))")
            return
        }
        let files = try Self.ruleFiles().map { "\(Self.dir)/\($0)" }
        let result = try await sh([udevadm, "verify", "--resolve-names=never"] + files)
        #expect(result.status == 0, "udevadm verify: \(result.output)")
    }
}
