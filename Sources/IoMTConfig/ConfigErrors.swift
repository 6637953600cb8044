/// One problem found in a configuration file.
///
/// Rendered as `agent.yaml:12: broker.qos: must be 1 or 2, got 3`. Messages never contain
/// secrets: values of unknown keys are not repeated, and credentials in URLs are not echoed.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    /// Where the configuration came from (a file path, or a name such as `<demo>`).
    public var source: String
    /// 1-based line number; nil when the problem concerns the whole file (e.g. it cannot be read).
    public var line: Int?
    /// 1-based column, given for YAML syntax errors.
    public var column: Int?
    /// The key path, e.g. `broker.qos` or `simulators[1].rate`; empty for syntax errors.
    public var keyPath: String
    /// What is wrong.
    public var message: String

    /// Creates a problem report.
    public init(source: String, line: Int?, column: Int? = nil, keyPath: String, message: String) {
        self.source = source
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    /// `source:line[:column]: keyPath: message`.
    public var description: String {
        var s = source
        if let line { s += ":\(line)" }
        if let column { s += ":\(column)" }
        s += ": "
        if !keyPath.isEmpty { s += "\(keyPath): " }
        return s + message
    }
}

/// Everything wrong with a configuration: thrown by ``AgentConfig/parse(yaml:source:)`` and
/// ``AgentConfig/load(path:)``. Never empty; problems are in file order.
public struct ConfigErrors: Error, Sendable, Equatable, CustomStringConvertible {
    /// The problems, sorted by line.
    public var problems: [ConfigProblem]

    /// Wraps problems, ordering them by position in the file.
    public init(_ problems: [ConfigProblem]) {
        self.problems = problems.enumerated().sorted { a, b in
            let la = a.element.line ?? 0, lb = b.element.line ?? 0
            if la != lb { return la < lb }
            let ca = a.element.column ?? 0, cb = b.element.column ?? 0
            if ca != cb { return ca < cb }
            return a.offset < b.offset
        }.map(\.element)
    }

    /// One problem per line.
    public var description: String {
        problems.map(\.description).joined(separator: "\n")
    }
}
