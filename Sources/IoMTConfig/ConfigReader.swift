import IoMTYAML

/// The parsed YAML node (the strict subset of ``IoMTYAML``).
typealias Node = YAMLNode

/// A mapping whose keys have been checked: known keys with their value nodes.
struct Section {
    /// Key path of the mapping ("" for the top level).
    var path: String
    /// Line of the mapping (where missing keys are reported).
    var line: Int
    var values: [String: Node] = [:]
    /// Line of each key (problems about a value are reported where its key is).
    var keyLines: [String: Int] = [:]

    func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

/// Walks the node tree, collecting problems.
struct ConfigReader {
    let source: String
    var problems: [ConfigProblem] = []

    init(source: String) { self.source = source }

    mutating func report(_ keyPath: String, _ line: Int?, _ message: String) {
        problems.append(ConfigProblem(source: source, line: line, keyPath: keyPath, message: message))
    }

    // MARK: Syntax errors

    /// The problem for a YAML error. The parser's messages never quote the text (a config
    /// file may hold a pasted secret), so they are passed on as they are.
    func syntaxProblem(_ error: YAMLError) -> ConfigProblem {
        let message: String
        switch error.kind {
        case let .duplicateKey(key, again):
            // The key's name only if it is one of ours (never echo text that may be a secret).
            let name = Keys.allNames.contains(key) ? "key '\(key)'" : "a key"
            message = "YAML error: \(name) appears more than once in the same mapping (first here, again at line \(again.line))"
        case .badCharacter: message = "cannot read the YAML text: \(error.message)"
        default: message = "YAML syntax error: \(error.message)"
        }
        return ConfigProblem(source: source, line: error.line, column: error.column, keyPath: "", message: message)
    }

    // MARK: Structure

    /// Checks that `node` is a mapping with only `keys`; reports unknown keys. An absent or
    /// empty node is an empty section (everything default). Nil if the node is not a mapping.
    mutating func section(_ node: Node?, path: String, parentLine: Int, keys: [String]) -> Section? {
        guard let node, !isNull(node) else {
            return Section(path: path, line: parentLine)
        }
        guard case let .mapping(mapping) = node else {
            if path.isEmpty {
                // Only the kind, never the text: a secret file passed as --config must not be echoed.
                let kind: String
                switch node {
                case .sequence: kind = "a list"
                case .scalar: kind = "a single value"
                case .mapping: kind = "something else"
                }
                report("", parentLine,
                       "the configuration must be a mapping of keys (gateway:, broker:, ...), got \(kind); is this the right file?")
            } else {
                report(path, parentLine, "must be a mapping (indented 'key: value' lines), got \(describe(node))")
            }
            return nil
        }
        var section = Section(path: path, line: parentLine)
        for (keyNode, value) in mapping {
            let keyLine = line(keyNode, section.line)
            guard case let .scalar(scalar) = keyNode else {
                report(path, keyLine, "keys must be plain names, got \(describe(keyNode))")
                continue
            }
            let key = scalar.string
            if keys.contains(key) {
                section.values[key] = value
                section.keyLines[key] = keyLine
            } else {
                report(section.path(key), keyLine, unknownKeyMessage(key, in: path, allowed: keys))
            }
        }
        return section
    }

    func unknownKeyMessage(_ key: String, in path: String, allowed: [String]) -> String {
        let lower = key.lowercased()
        if ["password", "passwd", "pass", "secret", "token", "pwd"].contains(where: { lower.contains($0) }) {
            return "unknown key; secrets do not belong in the configuration file: write the password to a file only the agent can read and set broker.password_file to its path"
        }
        if key == "<<" {
            return "YAML merge keys ('<<') are not supported; write the keys out"
        }
        if let near = closest(key, among: allowed) {
            return "unknown key (did you mean '\(near)'?)"
        }
        // A key that belongs to another section.
        let here = withoutIndices(path)
        let elsewhere = Keys.allPaths.filter { candidate in
            let last = candidate.split(separator: ".").last.map(String.init) ?? candidate
            let parent = candidate.count > last.count ? String(candidate.dropLast(last.count + 1)) : ""
            return parent != here && normalized(last) == normalized(key)
        }
        if let other = elsewhere.first {
            return "unknown key here (did you mean '\(other)'?)"
        }
        return "unknown key (known keys: \(allowed.joined(separator: ", ")))"
    }

    // MARK: Scalars

    func line(_ node: Node?, _ fallback: Int) -> Int { node?.line ?? fallback }

    /// The line of `key` in `s`, or of the mapping if the key is absent.
    func line(_ s: Section, _ key: String) -> Int { s.keyLines[key] ?? s.line }

    func isNull(_ node: Node) -> Bool {
        guard case let .scalar(s) = node, s.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// The value node for `key`, nil if absent or null.
    func value(_ s: Section, _ key: String) -> Node? {
        guard let node = s.values[key], !isNull(node) else { return nil }
        return node
    }

    /// Describes a node for "got ..." without trusting it to be short.
    func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case let .scalar(s):
            if isNull(node) { return "an empty value" }
            let text = clip(s.string)
            if s.style == .plain {
                if isBoolWord(s.string) { return "a boolean (\(text))" }
                if parseInteger(s.string) != nil || parseNumber(s.string) != nil { return "a number (\(text))" }
            }
            return "a string (\"\(text)\")"
        }
    }

    /// A scalar's text, reporting a type error for mappings and lists.
    mutating func text(_ s: Section, _ key: String) -> (String, Int)? {
        guard let node = value(s, key) else { return nil }
        guard case let .scalar(scalar) = node else {
            report(s.path(key), line(s, key), "must be a single value, got \(describe(node))")
            return nil
        }
        return (scalar.string, line(s, key))
    }

    /// A required, non-empty string.
    mutating func requiredText(_ s: Section, _ key: String, example: String) -> (String, Int)? {
        guard s.values[key].map({ !isNull($0) }) ?? false else {
            report(s.path(key), line(s, key), "is required (e.g. \(key): \(example))")
            return nil
        }
        guard let (value, line) = text(s, key) else { return nil }
        guard !value.isEmpty else {
            report(s.path(key), line, "must not be empty")
            return nil
        }
        return (value, line)
    }

    /// An optional non-empty string without control characters (paths, names).
    mutating func optionalText(_ s: Section, _ key: String) -> (String, Int)? {
        guard let (value, line) = text(s, key) else { return nil }
        if value.isEmpty {
            report(s.path(key), line, "must not be empty (leave the key out instead)")
            return nil
        }
        if value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            report(s.path(key), line, "must not contain control characters")
            return nil
        }
        return (value, line)
    }

    /// A file path for a secret or key material. Refused without echoing the value if it does
    /// not look like a path (someone pasted the password or PEM text itself).
    mutating func filePath(_ s: Section, _ key: String, example: String) -> (String, Int)? {
        guard let node = value(s, key) else { return nil }
        let line = line(s, key)
        guard case let .scalar(scalar) = node else {
            report(s.path(key), line, "must be a file path (e.g. \(example)), got \(node.isMappingOrSequence ? describe(node) : "something else")")
            return nil
        }
        let text = scalar.string
        if text.isEmpty {
            report(s.path(key), line, "must not be empty (leave the key out instead)")
            return nil
        }
        if !text.contains("/") || text.contains("-----BEGIN")
            || text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            // Not echoed: this may be the secret itself.
            report(s.path(key), line,
                   "must be the path of a file (e.g. \(example), or ./name for the working directory), not its contents; the value is not shown")
            return nil
        }
        return (text, line)
    }

    /// An integer in `range`; `default` when absent. Quoted numbers are strings, not integers.
    mutating func integer(_ s: Section, _ key: String, _ range: ClosedRange<Int64>, default def: Int64,
                          rangeMessage: String? = nil) -> (Int64, Int?) {
        guard let node = value(s, key) else { return (def, nil) }
        let line = line(s, key)
        guard case let .scalar(scalar) = node, scalar.style == .plain,
              let parsed = parseInteger(scalar.string) else {
            report(s.path(key), line, "must be an integer, got \(describe(node))")
            return (def, line)
        }
        guard let v = parsed.int64, range.contains(v) else {
            report(s.path(key), line,
                   "\(rangeMessage ?? "must be between \(range.lowerBound) and \(range.upperBound)"), got \(clip(scalar.string))")
            return (def, line)
        }
        return (v, line)
    }

    /// A finite number (integer or decimal) in `range`, or nil if absent.
    mutating func number(_ s: Section, _ key: String, _ check: (Double) -> Bool, rangeMessage: String) -> (Double, Int)? {
        guard let node = value(s, key) else { return nil }
        let line = line(s, key)
        guard case let .scalar(scalar) = node, scalar.style == .plain,
              let v = parseNumber(scalar.string) else {
            report(s.path(key), line, "must be a number, got \(describe(node))")
            return nil
        }
        guard check(v) else {
            report(s.path(key), line, "\(rangeMessage), got \(clip(scalar.string))")
            return nil
        }
        return (v, line)
    }

    /// One of an enum's raw values; `default` when absent.
    mutating func choice<E: CaseIterable & RawRepresentable>(_ s: Section, _ key: String, default def: E?) -> E?
    where E.RawValue == String {
        guard let node = value(s, key) else { return def }
        let names = E.allCases.map(\.rawValue)
        guard case let .scalar(scalar) = node else {
            report(s.path(key), line(s, key), "must be one of \(names.joined(separator: ", ")), got \(describe(node))")
            return nil
        }
        if let v = E(rawValue: scalar.string) { return v }
        var message = "must be one of \(names.joined(separator: ", ")), got \(describe(node))"
        if let near = closest(scalar.string, among: names) { message += " (did you mean '\(near)'?)" }
        report(s.path(key), line(s, key), message)
        return nil
    }

    /// Parses `yaml` and builds a document with `build`, collecting every problem: the YAML
    /// syntax error, or all that `build` reported (each with line and key path).
    static func read<T>(yaml: String, source: String, what: String,
                        _ build: (inout ConfigReader, Node?) -> T?) throws(ConfigErrors) -> T {
        var reader = ConfigReader(source: source)
        let root: Node?
        do {
            root = try YAMLParser.parse(yaml)
        } catch {
            throw ConfigErrors([reader.syntaxProblem(error)])
        }
        let result = build(&reader, root)
        if let result, reader.problems.isEmpty { return result }
        if reader.problems.isEmpty {
            reader.problems.append(ConfigProblem(source: source, line: nil, keyPath: "", message: "invalid \(what)"))
        }
        throw ConfigErrors(reader.problems)
    }

    /// A required choice (e.g. a device `profile`): "is required (one of ...)" when absent.
    mutating func requiredChoice<E: CaseIterable & RawRepresentable>(_ s: Section, _ key: String) -> E?
    where E.RawValue == String {
        guard value(s, key) != nil else {
            let names = E.allCases.map(\.rawValue).joined(separator: ", ")
            report(s.path(key), line(s, key), "is required (one of \(names))")
            return nil
        }
        return choice(s, key, default: nil)
    }

    /// A device's `patient`: required, at most 64 bytes, no control characters.
    mutating func patientID(_ s: Section) -> String? {
        guard let (p, line) = requiredText(s, "patient", example: "P-1001") else { return nil }
        if p.utf8.count > 64 || p.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            report(s.path("patient"), line, "must be at most 64 bytes without control characters")
            return nil
        }
        return p
    }
}

// MARK: - Helpers

/// `serial[2].match` → `serial[].match`.
func withoutIndices(_ path: String) -> String {
    var out = ""
    var skipping = false
    for c in path {
        if c == "[" { skipping = true; out.append("[") } else if c == "]" { skipping = false; out.append("]") } else if !skipping { out.append(c) }
    }
    return out
}

extension Node {
    var isMappingOrSequence: Bool {
        switch self {
        case .mapping, .sequence: true
        default: false
        }
    }
}

/// A parsed integer: sign and magnitude (nil magnitude: too large for UInt64).
struct ParsedInteger {
    var negative: Bool
    var magnitude: UInt64?

    var int64: Int64? {
        guard let magnitude else { return nil }
        if negative {
            if magnitude == UInt64(Int64.max) + 1 { return Int64.min }
            return magnitude <= UInt64(Int64.max) ? -Int64(magnitude) : nil
        }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }
}

/// A decimal integer, optionally signed, `_` allowed between digits (`86_400`).
func parseInteger(_ text: String) -> ParsedInteger? {
    var s = Substring(text)
    var negative = false
    if let c = s.first, c == "+" || c == "-" {
        negative = c == "-"
        s = s.dropFirst()
    }
    guard let first = s.first, first.isASCII, first.isNumber, s.last != "_" else { return nil }
    var value: UInt64? = 0
    for c in s.utf8 {
        if c == UInt8(ascii: "_") { continue }
        guard c >= 0x30, c <= 0x39 else { return nil }
        if let v = value {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - 0x30))
            value = o1 || o2 ? nil : a
        }
    }
    return ParsedInteger(negative: negative, magnitude: value)
}

/// A finite decimal number (`1`, `0.25`, `1e3`), `_` allowed. No inf, nan or hex.
func parseNumber(_ text: String) -> Double? {
    let cleaned = text.filter { $0 != "_" }
    guard !cleaned.isEmpty,
          cleaned.allSatisfy({ ($0.isASCII && $0.isNumber) || "+-.eE".contains($0) }),
          let v = Double(cleaned), v.isFinite else { return nil }
    return v
}

func isBoolWord(_ s: String) -> Bool {
    ["true", "false", "yes", "no", "on", "off", "y", "n"].contains(s.lowercased())
}

/// At most 40 characters of `s`, for echoing a (non-secret) value in a message.
func clip(_ s: String) -> String {
    let oneLine = String(s.map { $0.isNewline ? " " : $0 })
    return oneLine.count <= 40 ? oneLine : String(oneLine.prefix(37)) + "..."
}

/// Lower-cased, without `_` and `-`, for loose key comparison (`clientId` ~ `client_id`).
func normalized(_ s: String) -> String {
    String(s.lowercased().filter { $0 != "_" && $0 != "-" })
}

/// The candidate nearest to `word` if it is plausibly a typo of it.
func closest(_ word: String, among candidates: [String]) -> String? {
    if let exact = candidates.first(where: { normalized($0) == normalized(word) }) { return exact }
    let lowered = word.lowercased()
    if lowered.count >= 3, let prefixed = candidates.first(where: { $0.lowercased().hasPrefix(lowered) }) {
        return prefixed
    }
    let limit = word.count >= 6 ? 2 : 1
    var best: (String, Int)?
    for c in candidates {
        let d = editDistance(word.lowercased(), c.lowercased())
        if d <= limit, d < (best?.1 ?? Int.max) { best = (c, d) }
    }
    return best?.0
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a), y = Array(b)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var d = [[Int]](repeating: [Int](repeating: 0, count: y.count + 1), count: x.count + 1)
    for i in 0...x.count { d[i][0] = i }
    for j in 0...y.count { d[0][j] = j }
    for i in 1...x.count {
        for j in 1...y.count {
            let cost = x[i - 1] == y[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, x[i - 1] == y[j - 2], x[i - 2] == y[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[x.count][y.count]
}
