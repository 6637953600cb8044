import Foundation
import Testing
import IoMTConfig
import IoMTCore
@testable import IoMTYAML

// MARK: Helpers

func parse(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> YAMLNode {
    do {
        guard let node = try YAMLParser.parse(text) else {
            Issue.record("empty document", sourceLocation: sourceLocation)
            throw YAMLError(.syntax, at: YAMLMark(line: 0, column: 0), "empty")
        }
        return node
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        throw error
    }
}

func failure(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> YAMLError? {
    do {
        let node = try YAMLParser.parse(text)
        Issue.record("expected an error, parsed \(String(describing: node))", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

extension YAMLNode {
    /// `a.b[2].c` lookups for tests.
    func at(_ path: String) -> YAMLNode? {
        var node: YAMLNode? = self
        for part in path.split(separator: ".") {
            var name = Substring(part)
            var index: Int?
            if let open = part.firstIndex(of: "[") {
                name = part[..<open]
                index = Int(part[part.index(after: open)..<part.index(before: part.endIndex)])
            }
            if !name.isEmpty {
                guard case let .mapping(m)? = node else { return nil }
                node = m[String(name)]
            }
            if let index {
                guard case let .sequence(s)? = node, index < s.count else { return nil }
                node = s[index]
            }
        }
        return node
    }

    func text(_ path: String) -> String? { at(path)?.scalar?.string }
}

let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func readRepositoryFile(_ relative: String) throws -> String {
    try String(contentsOf: repositoryRoot.appendingPathComponent(relative), encoding: .utf8)
}

// MARK: Real files

@Suite struct RealFileTests {
    @Test func deployAgentYAML() throws {
        let root = try parse(try readRepositoryFile("deploy/agent.yaml"))
        #expect(root.text("gateway.id") == "ward7-bed12")
        #expect(root.text("broker.url[1]") == "mqtts://mqtt-b.hospital.example:8883")
        #expect(root.text("buffer.backlog_share") == "0.25")
        #expect(root.at("broker.qos")?.scalar?.style == .plain)
        guard case let .sequence(sims)? = root.at("simulators") else { Issue.record("simulators"); return }
        #expect(sims.isEmpty)
        #expect(root.at("gateway.id")?.line == 12)
        #expect(root.at("gateway.id")?.column == 7)
        guard case let .mapping(top) = root else { Issue.record("top"); return }
        #expect(top.keys.compactMap { $0.scalar?.string } ==
                ["gateway", "state_dir", "log", "broker", "buffer", "output", "simulators", "serial", "control", "security", "alerts"])
    }

    @Test func demoYAML() throws {
        let root = try parse(AgentConfig.demoYAML)
        #expect(root.text("simulators[1].id") == "sim-bp-1")
        #expect(root.text("simulators[2].rate") == "0.5")
        #expect(root.at("simulators[2].rate")?.line == 32)
        #expect(root.text("alerts.enabled") == "true")
        #expect(root.text("broker.url") == "mqtt://127.0.0.1:1883")
    }

    @Test func lineProfiles() throws {
        let dir = repositoryRoot.appendingPathComponent("deploy/profiles")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }
        #expect(!names.isEmpty)
        for name in names {
            _ = try parse(try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8))
        }
        let root = try parse(try readRepositoryFile("deploy/profiles/masimo-ascii1.yaml"))
        #expect(root.text("line.baud") == "9600")
        #expect(root.text("fields.spo2.unit") == "%")
        #expect(root.at("fields.spo2.unit")?.scalar?.style == .doubleQuoted)
        #expect(root.text("fields.exc.bits[1].mask") == "0x182")
        #expect(root.text("fields.alarm.bits[2].condition") == "low-battery")
        #expect(root.text("pattern")?.hasPrefix("SPO2=(?<spo2>") == true)
        #expect(root.at("pattern")?.scalar?.style == .singleQuoted)
    }
}

// MARK: Structure

@Suite struct StructureTests {
    @Test func nestedBlockAndCompactItems() throws {
        let root = try parse("""
            ---
            serial:
              - profile: x
                match:
                  vendor_id: 10c4
                port:
              - - a
                - b
            list:
            - one
            - two
            empty:
            tilde: ~
            """)
        #expect(root.text("serial[0].profile") == "x")
        #expect(root.text("serial[0].match.vendor_id") == "10c4")
        #expect(root.at("serial[0].port")?.scalar?.isNull == true)
        #expect(root.at("serial[0].port")?.line == 6)
        guard case let .sequence(inner)? = root.at("serial[1]") else { Issue.record("inner"); return }
        #expect(inner.compactMap { $0.scalar?.string } == ["a", "b"])
        #expect(root.text("list[1]") == "two")
        #expect(root.at("empty")?.scalar?.isNull == true)
        #expect(root.at("tilde")?.scalar?.isNull == true)
        #expect(root.at("serial[1]")?.line == 7 && root.at("serial[1]")?.column == 5)
    }

    @Test func flowCollections() throws {
        let root = try parse("""
            match: {vendor_id: 10c4, serial: "0001"}
            list: [a, 'b c', "d", -1, mqtt://h:1883]
            empty: []
            none: {}
            multi: [
              a,   # comment
              {x: 1, y: [2, 3]},
            ]
            nested:
              deep: [
                1,
              ]
            novalue: {a: , b: 2}
            """)
        #expect(root.text("match.vendor_id") == "10c4")
        #expect(root.text("match.serial") == "0001")
        #expect(root.at("match.serial")?.scalar?.isQuoted == true)
        #expect(root.at("match.vendor_id")?.scalar?.isQuoted == false)
        guard case let .sequence(list)? = root.at("list") else { Issue.record("list"); return }
        #expect(list.compactMap { $0.scalar?.string } == ["a", "b c", "d", "-1", "mqtt://h:1883"])
        #expect(list[4].column == 27)
        guard case let .sequence(e)? = root.at("empty"), case let .mapping(n)? = root.at("none") else {
            Issue.record("empty"); return
        }
        #expect(e.isEmpty && n.isEmpty)
        #expect(root.text("multi[1].y[1]") == "3")
        #expect(root.at("multi[1]")?.line == 7)
        #expect(root.at("novalue.a")?.scalar?.isNull == true)
        #expect(root.text("nested.deep[0]") == "1")
        // A continuation line at the key's indentation that does not close the collection.
        #expect(failure("a:\n  b: [1,\n  c: 2]\n")?.line == 3)
        #expect(failure("a:\n  b: [1,\n ]\n")?.line == 3)
    }

    @Test func quotingAndEscapes() throws {
        let root = try parse(#"""
            a: 'it''s # not a comment'
            b: "q\" b\\ n\n t\t u\u00e9 x\x41 U\U0001F600 s\/"
            c: plain text with  spaces   # comment
            d: "#hash"
            e: a#b
            f: "   "
            g: ''
            """#)
        #expect(root.text("a") == "it's # not a comment")
        #expect(root.text("b") == "q\" b\\ n\n t\t u\u{e9} xA U\u{1F600} s/")
        #expect(root.text("c") == "plain text with  spaces")
        #expect(root.text("d") == "#hash")
        #expect(root.text("e") == "a#b")
        #expect(root.text("f") == "   ")
        #expect(root.text("g") == "" && root.at("g")?.scalar?.isNull == false)
    }

    @Test func literalBlockScalars() throws {
        let root = try parse("a: |\n  one\n\n  two\n   three\nb: |-\n  x\n  y\n\nc: |+\n  k\n\nd: end\n")
        #expect(root.text("a") == "one\n\ntwo\n three\n")
        #expect(root.text("b") == "x\ny")
        #expect(root.text("c") == "k\n\n")
        #expect(root.text("d") == "end")
        #expect(root.at("a")?.scalar?.style == .literal)
    }

    @Test func emptyAndCommentOnlyDocuments() throws {
        #expect(try YAMLParser.parse("") == nil)
        #expect(try YAMLParser.parse("# only\n\n   # comments\n") == nil)
        #expect(try YAMLParser.parse("---\n") == nil)
        #expect(try parse("\u{FEFF}a: 1\r\nb: 2\r\n").text("b") == "2")
    }

    @Test func tabsAsSeparatorsAndOldMacLineEnds() throws {
        let root = try parse("a:\tx\rb: [1,\t2]\r")
        #expect(root.text("a") == "x")
        #expect(root.text("b[1]") == "2")
        #expect(root.at("b")?.line == 2)
    }

    @Test func keyOrderIsKept() throws {
        guard case let .mapping(m) = try parse("z: 1\na: 2\nm: 3\n") else { Issue.record("mapping"); return }
        #expect(m.keys.compactMap { $0.scalar?.string } == ["z", "a", "m"])
        #expect(m.keys.map(\.line) == [1, 2, 3])
    }
}

// MARK: Errors

@Suite struct ErrorTests {
    @Test(arguments: [
        // (text, line, column, words, kind)
        ("a: 1\nb: 2\na: 3\n", 1, 1, "appears more than once", "duplicate"),
        ("m: {x: 1, x: 2}\n", 1, 5, "appears more than once", "duplicate"),
        ("a: &x 1\n", 1, 4, "anchors", "unsupported"),
        ("a: *x\n", 1, 4, "aliases", "unsupported"),
        ("a: !!str 1\n", 1, 4, "tags", "unsupported"),
        ("a:\n  <<: {b: 1}\n", 2, 3, "merge keys", "unsupported"),
        ("a: {<<: 1}\n", 1, 5, "merge keys", "unsupported"),
        ("? a\n: b\n", 1, 1, "explicit keys", "unsupported"),
        ("a: >\n  x\n", 1, 4, "folded", "unsupported"),
        ("%YAML 1.2\n---\na: 1\n", 1, 1, "directives", "unsupported"),
        ("a: 1\n---\nb: 2\n", 2, 1, "only one document", "second"),
        ("a: 1\n...\n", 2, 1, "document end", "unsupported"),
        ("a:\n  b: 1\n   c: 2\n", 3, 4, "bad indentation", "syntax"),
        ("a:\n  b: 1\n c: 2\n", 3, 2, "bad indentation", "syntax"),
        ("a:\n\tb: 1\n", 2, 1, "tab", "syntax"),
        ("a: \"open\n", 1, 4, "unterminated quoted", "syntax"),
        ("a: 'open\n", 1, 4, "unterminated quoted", "syntax"),
        ("a: [1, 2\n", 1, 4, "unterminated", "syntax"),
        ("a: {b: 1\n", 1, 4, "unterminated", "syntax"),
        ("a: [1, 2\nb: 3\n", 2, 1, "to close the collection opened at line 1, column 4", "syntax"),
        ("a: 1\njust text\n", 2, 1, "a key without ':'", "syntax"),
        ("m: {a, b: 1}\n", 1, 5, "a key without ':'", "syntax"),
        ("a: b: c\n", 1, 4, "mapping cannot start on the key's line", "syntax"),
        ("a: - b\n", 1, 4, "list cannot start on the key's line", "syntax"),
        ("a: \"x\\q\"\n", 1, 6, "invalid escape", "syntax"),
        ("a: \"x\\u12\"\n", 1, 6, "invalid escape", "syntax"),
        ("a: \"x\\uD800\"\n", 1, 6, "invalid escape", "syntax"),
        ("a: [1,,2]\n", 1, 7, "empty entry", "syntax"),
        ("a: [x: 1]\n", 1, 6, "use { }", "unsupported"),
        ("a: [1] x\n", 1, 8, "unexpected text", "syntax"),
        ("a: \"x\"y\n", 1, 7, "closing quote", "syntax"),
        ("a: 1\n- b\n", 2, 1, "list item where a key was expected", "syntax"),
        ("a: |2\n  x\n", 1, 5, "indentation indicators", "unsupported"),
        ("a: x\u{1}\n", 1, 5, "control characters", "character"),
        ("a: x\u{7F}\n", 1, 5, "control characters", "character"),
        ("a: x\u{FEFF}\n", 1, 5, "byte order mark", "character"),
        ("[a]: 1\n", 1, 1, "cannot be a key", "unsupported"),
        // Never silently folded: multi-line plain scalars, inside and outside brackets.
        ("a: b\n  c\n", 2, 3, "bad indentation", "syntax"),
        ("a: [b\n  c]\n", 2, 3, "expected ',' or ']'", "syntax"),
        ("a: \"b\n  c\"\n", 1, 4, "unterminated quoted", "syntax"),
        ("a: 1\n  # comment is fine\n\tb: 2\n", 3, 1, "tab", "syntax"),
        ("a: [1, 2]#c\n", 1, 10, "space before '#'", "syntax"),
    ] as [(String, Int, Int, String, String)])
    func errorHasPositionAndWords(text: String, line: Int, column: Int, words: String, kind: String) throws {
        let e = try #require(failure(text))
        #expect(e.line == line, "\(e)")
        #expect(e.column == column, "\(e)")
        #expect(e.message.contains(words), "\(e)")
        switch (kind, e.kind) {
        case ("duplicate", .duplicateKey), ("unsupported", .unsupported), ("second", .secondDocument),
             ("syntax", .syntax), ("character", .badCharacter):
            break
        default:
            Issue.record("kind \(e.kind), expected \(kind)")
        }
    }

    @Test func duplicateKeyReportsBothLines() throws {
        let e = try #require(failure("x:\n  url: a\n  y: 1\n  url: b\n"))
        #expect(e.line == 2 && e.column == 3)
        #expect(e.kind == .duplicateKey(key: "url", again: YAMLMark(line: 4, column: 3)))
        #expect(e.message.contains("again at line 4"))
    }

    @Test func messagesNeverEchoTheText() throws {
        let secret = "hunter2SECRET"
        let texts = [
            "password: \"\(secret)\n", "password: '\(secret)\n", "p: [\(secret)\n", "p: {\(secret)\n",
            "\(secret)\nx: 1\n", "p: \(secret): x\n", "p: \"\(secret)\\q\"\n", "p: &\(secret) 1\n",
            "p: *\(secret)\n", "p: !\(secret) 1\n", "\(secret): 1\n\(secret): 2\n", "p: \(secret)\u{1}\n",
            "p:\n  a: 1\n   \(secret): 2\n", "p: [\(secret)] \(secret)\n",
        ]
        for text in texts {
            let e = try #require(failure(text))
            #expect(!e.description.contains("hunter2"), "\(e)")
        }
    }
}

// MARK: Limits and robustness

@Suite struct LimitTests {
    @Test func nestingDepthIsLimited() throws {
        let deepFlow = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        let e = try #require(failure(deepFlow))
        #expect(e.kind == .tooDeep && e.line == 1 && e.column == 65)
        let okFlow = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(try YAMLParser.parse(okFlow) != nil)

        var block = ""
        for i in 0..<70 { block += String(repeating: " ", count: i * 2) + "k\(i):\n" }
        let b = try #require(failure(block))
        #expect(b.kind == .tooDeep && b.line == 65)

        var items = ""
        for i in 0..<70 { items += String(repeating: " ", count: i * 2) + "-\n" }
        #expect(failure(items)?.kind == .tooDeep)
        // The limit is a parameter.
        #expect((try? YAMLParser.parse("a: {b: [1]}", maxDepth: 2)) == nil)
        #expect((try? YAMLParser.parse("a: {b: [1]}", maxDepth: 3)) != nil)
    }


    static let alphabet: [String] = [
        " ", "  ", "\n", "\t", "-", "- ", ":", ": ", "#", " #", "'", "\"", "\\", "[", "]", "{", "}", ",",
        "&", "*", "!", "|", ">", "?", "%", "@", "---", "...", "<<", "a", "key", "0x1F", "é", "\u{1F600}",
        "\r\n", "\u{1}", "~", "null", "\\u00", "\\x4",
    ]

    @Test func fuzzRandomAndMutatedTextNeverCrashesOrHangs() throws {
        var rng = SplitMix64(seed: 0x5EED)
        let seeds = [try readRepositoryFile("deploy/agent.yaml"), AgentConfig.demoYAML,
                     try readRepositoryFile("deploy/profiles/masimo-ascii1.yaml")]
        let clock = ContinuousClock()
        var parsed = 0, refused = 0
        var slowest = Duration.zero
        for round in 0..<1500 {
            var text: String
            if round % 3 == 0 {
                text = ""
                for _ in 0..<rng.below(200) { text += Self.alphabet[rng.below(Self.alphabet.count)] }
            } else {
                var scalars = Array(seeds[rng.below(seeds.count)].unicodeScalars)
                for _ in 0..<(1 + rng.below(8)) {
                    guard !scalars.isEmpty else { break }
                    let at = rng.below(scalars.count)
                    switch rng.below(3) {
                    case 0: scalars.remove(at: at)
                    case 1: scalars.insert(contentsOf: Self.alphabet[rng.below(Self.alphabet.count)].unicodeScalars, at: at)
                    default: scalars[at] = Self.alphabet[rng.below(Self.alphabet.count)].unicodeScalars.first ?? " "
                    }
                }
                text = String(String.UnicodeScalarView(scalars))
            }
            let start = clock.now
            do {
                _ = try YAMLParser.parse(text)
                parsed += 1
            } catch {
                refused += 1
                #expect(error.line >= 1 && error.column >= 1)
                var lines = 1
                var previous: Unicode.Scalar = " "
                for u in text.unicodeScalars {
                    if u == "\r" || (u == "\n" && previous != "\r") { lines += 1 }
                    previous = u
                }
                #expect(error.line <= lines, "\(error)")
            }
            slowest = max(slowest, clock.now - start)
        }
        #expect(parsed > 0 && refused > 0)
        #expect(slowest < .seconds(1), "slowest input took \(slowest)")
    }

    @Test func largeInputsAreLinear() throws {
        let clock = ContinuousClock()
        func time(_ text: String) -> Duration {
            let start = clock.now
            _ = try? YAMLParser.parse(text)
            return clock.now - start
        }
        // Long runs that would be quadratic in a naive scanner.
        let spaces = "a: x" + String(repeating: " ", count: 200_000) + "y\n"
        let flow = "a: [" + String(repeating: "1, ", count: 50_000) + "1]\n"
        var many = ""
        for i in 0..<20_000 { many += "k\(i): v\n" }
        let open = String(repeating: "[", count: 100_000)
        for text in [spaces, flow, many, open] {
            #expect(time(text) < .seconds(5))
        }
        #expect(try parse(spaces).text("a")?.count == 200_002)
    }
}

// MARK: Through the configuration reader

@Suite struct ConfigReaderTests {
    @Test func duplicateKeyNamesOnlyKnownKeys() throws {
        do {
            _ = try AgentConfig.parse(yaml: "gateway:\n  id: g\n  hunter2: 1\n  hunter2: 2\n", source: "a.yaml")
            Issue.record("expected an error")
        } catch {
            let p = try #require(error.problems.first)
            #expect(error.problems.count == 1)
            #expect(p.line == 3 && p.column == 3)
            #expect(p.message == "YAML error: a key appears more than once in the same mapping (first here, again at line 4)")
            #expect(!error.description.contains("hunter2"))
        }
        do {
            _ = try AgentConfig.parse(yaml: "gateway:\n  id: g\n  id: h\n", source: "a.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.problems.first?.message.contains("key 'id' appears more than once") == true)
        }
    }

    @Test func syntaxErrorsKeepTheirPosition() throws {
        do {
            _ = try AgentConfig.parse(yaml: "gateway:\n  id: g\nbroker:\n\turl: x\n", source: "a.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "a.yaml:4:1: YAML syntax error: a tab in the indentation; indent with spaces only")
        }
    }
}

// MARK: Round trip property

/// A value tree, emitted as YAML in random styles and parsed back.
indirect enum Tree: Equatable {
    case map([String], [Tree])
    case seq([Tree])
    case str(String)

    init(_ node: YAMLNode) {
        switch node {
        case let .mapping(m): self = .map(m.keys.map { $0.scalar?.string ?? "?" }, m.values.map(Tree.init))
        case let .sequence(s): self = .seq(s.map(Tree.init))
        case let .scalar(s): self = .str(s.string)
        }
    }
}

struct Emitter {
    var rng: SplitMix64

    static let pieces: [String] = ["a", "b", "Z", "0", "9", "_", ".", "/", " ", ":", "#", "-", ",", "[", "}",
                                   "\"", "'", "\\", "\n", "\t", "é", "😀", "&", "*", "!", "|", "~"]

    mutating func string(plainOnly: Bool = false) -> String {
        var s = ""
        let safe = ["a", "b", "Z", "0", "9", "_", ".", "/"]
        let n = rng.below(plainOnly ? 6 : 8) + (plainOnly ? 1 : 0)
        for _ in 0..<n { s += plainOnly ? safe[rng.below(safe.count)] : Self.pieces[rng.below(Self.pieces.count)] }
        return s
    }

    mutating func tree(depth: Int) -> Tree {
        let r = rng.below(depth >= 4 ? 1 : 3)
        switch r {
        case 0: return .str(string())
        case 1:
            var keys: [String] = []
            var values: [Tree] = []
            for _ in 0..<rng.below(4) {
                let k = string()
                if keys.contains(k) { continue }
                keys.append(k)
                values.append(tree(depth: depth + 1))
            }
            return .map(keys, values)
        default:
            return .seq((0..<rng.below(4)).map { _ in tree(depth: depth + 1) })
        }
    }

    func isPlainSafe(_ s: String) -> Bool {
        guard let f = s.unicodeScalars.first, f.properties.isAlphabetic || ("0"..."9").contains(f) else { return false }
        return s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || "_./".unicodeScalars.contains($0) }
            && !["null", "Null", "NULL"].contains(s)
    }

    mutating func scalar(_ s: String) -> String {
        if isPlainSafe(s) && rng.below(2) == 0 { return s }
        if !s.contains("\n") && !s.contains("\t") && rng.below(2) == 0 {
            return "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
        }
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += rng.below(2) == 0 ? "\\n" : "\\u000A"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    mutating func flow(_ t: Tree) -> String {
        switch t {
        case let .str(s): return scalar(s)
        case let .seq(items): return "[" + items.map { flow($0) }.joined(separator: rng.below(2) == 0 ? ", " : ",") + "]"
        case let .map(keys, values):
            return "{" + zip(keys, values).map { scalar($0) + ": " + flow($1) }.joined(separator: ", ") + "}"
        }
    }

    /// Lines of `t` as a block node at `indent` (a scalar is one line).
    mutating func block(_ t: Tree, indent: Int) -> [String] {
        let pad = String(repeating: " ", count: indent)
        switch t {
        case .str: return [pad + flow(t)]
        case let .seq(items):
            if items.isEmpty || rng.below(5) == 0 { return [pad + flow(t)] }
            var lines: [String] = []
            for item in items {
                switch item {
                case .str: lines.append(pad + "- " + flow(item))
                case .seq([]), .map([], []): lines.append(pad + "- " + flow(item))
                default:
                    if rng.below(2) == 0 {
                        // Compact: the nested node starts on the dash line.
                        var inner = block(item, indent: indent + 2)
                        inner[0] = pad + "- " + inner[0].dropFirst(indent + 2)
                        lines += inner
                    } else {
                        lines.append(pad + "-" + (rng.below(2) == 0 ? "" : "   # item"))
                        lines += block(item, indent: indent + 2 + rng.below(2))
                    }
                }
            }
            return lines
        case let .map(keys, values):
            if keys.isEmpty || rng.below(5) == 0 { return [pad + flow(t)] }
            var lines: [String] = []
            for (k, v) in zip(keys, values) {
                let key = pad + scalar(k) + ":"
                switch v {
                case .str: lines.append(key + " " + flow(v) + (rng.below(3) == 0 ? "  # note" : ""))
                case .seq([]), .map([], []): lines.append(key + " " + flow(v))
                default:
                    if rng.below(4) == 0 {
                        lines.append(key + " " + flow(v))
                    } else {
                        lines.append(key)
                        if rng.below(4) == 0 { lines.append("") }
                        let same = block(v, indent: indent)
                        if case .seq = v, rng.below(2) == 0, same[0].hasPrefix(pad + "-") {
                            lines += same   // "key:\n- item" at the key's indentation
                        } else {
                            lines += block(v, indent: indent + 2)
                        }
                    }
                }
            }
            return lines
        }
    }
}

@Test func randomTreesRoundTripThroughEveryStyle() throws {
    var emitter = Emitter(rng: SplitMix64(seed: 42))
    for _ in 0..<2000 {
        let tree = emitter.tree(depth: 0)
        let text = emitter.block(tree, indent: 0).joined(separator: "\n") + "\n"
        do {
            let node = try YAMLParser.parse(text)
            let back = node.map(Tree.init)
            #expect(back == tree, "\(text)")
            if back != tree { return }
        } catch {
            Issue.record("\(error) in\n\(text)")
            return
        }
    }
}
