/// A position in the YAML text: 1-based line and 1-based column (in Unicode scalars).
public struct YAMLMark: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// 1-based line.
    public var line: Int
    /// 1-based column, counted in Unicode scalars.
    public var column: Int

    /// A mark at `line`, `column`.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    /// `line:column`.
    public var description: String { "\(line):\(column)" }
}

/// How a scalar was written. The configuration reader decides types from the text and the
/// style: only plain scalars can be numbers, booleans or null.
public enum YAMLScalarStyle: Sendable, Equatable {
    /// Unquoted text.
    case plain
    /// `'text'` (`''` is one quote).
    case singleQuoted
    /// `"text"` with backslash escapes.
    case doubleQuoted
    /// A literal block scalar (`|`, `|-`, `|+`).
    case literal
}

/// A scalar: its text (escapes resolved), its style and where it starts.
public struct YAMLScalar: Sendable, Equatable {
    /// The text, after quote and escape processing.
    public var string: String
    /// How it was written.
    public var style: YAMLScalarStyle
    /// Where it starts (the opening quote for quoted scalars, the indicator for block scalars;
    /// for an empty value, just after its `:` or `-`).
    public var mark: YAMLMark

    /// A scalar.
    public init(string: String, style: YAMLScalarStyle, mark: YAMLMark) {
        self.string = string
        self.style = style
        self.mark = mark
    }

    /// True for any style but plain: quoted text is always a string.
    public var isQuoted: Bool { style != .plain }

    /// True for a plain empty value, `~` or `null` (YAML 1.2 core schema).
    public var isNull: Bool {
        style == .plain && ["", "~", "null", "Null", "NULL"].contains(string)
    }
}

/// A mapping: key/value pairs in file order (keys are unique scalars).
public struct YAMLMapping: Sendable, RandomAccessCollection {
    /// The pairs, in file order.
    public var pairs: [(key: YAMLNode, value: YAMLNode)]
    /// Where the mapping starts (its first key, or the `{`).
    public var mark: YAMLMark

    /// A mapping.
    public init(pairs: [(key: YAMLNode, value: YAMLNode)], mark: YAMLMark) {
        self.pairs = pairs
        self.mark = mark
    }

    /// The first index.
    public var startIndex: Int { pairs.startIndex }
    /// One past the last index.
    public var endIndex: Int { pairs.endIndex }
    /// The pair at `position`.
    public subscript(position: Int) -> (key: YAMLNode, value: YAMLNode) { pairs[position] }

    /// The keys, in file order.
    public var keys: [YAMLNode] { pairs.map(\.key) }
    /// The values, in file order.
    public var values: [YAMLNode] { pairs.map(\.value) }

    /// The value of the first key whose scalar text is `key`.
    public subscript(key: String) -> YAMLNode? {
        for pair in pairs {
            if case let .scalar(s) = pair.key, s.string == key { return pair.value }
        }
        return nil
    }
}

/// A sequence: its items in file order.
public struct YAMLSequence: Sendable, RandomAccessCollection {
    /// The items.
    public var items: [YAMLNode]
    /// Where the sequence starts (its first `-`, or the `[`).
    public var mark: YAMLMark

    /// A sequence.
    public init(items: [YAMLNode], mark: YAMLMark) {
        self.items = items
        self.mark = mark
    }

    /// The first index.
    public var startIndex: Int { items.startIndex }
    /// One past the last index.
    public var endIndex: Int { items.endIndex }
    /// The item at `position`.
    public subscript(position: Int) -> YAMLNode { items[position] }
}

/// A node of the YAML subset: mapping, sequence or scalar, each with its position.
public enum YAMLNode: Sendable {
    /// Key/value pairs in file order.
    case mapping(YAMLMapping)
    /// Items in file order.
    case sequence(YAMLSequence)
    /// A scalar.
    case scalar(YAMLScalar)

    /// Where the node starts.
    public var mark: YAMLMark {
        switch self {
        case let .mapping(m): m.mark
        case let .sequence(s): s.mark
        case let .scalar(s): s.mark
        }
    }

    /// 1-based line where the node starts.
    public var line: Int { mark.line }
    /// 1-based column where the node starts.
    public var column: Int { mark.column }

    /// The scalar, if this is one.
    public var scalar: YAMLScalar? {
        if case let .scalar(s) = self { return s }
        return nil
    }
}

/// Why a text is not accepted. The message never contains text from the document, except a
/// duplicated key's name when it is a short plain identifier.
public struct YAMLError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The class of problem.
    public enum Kind: Sendable, Equatable {
        /// Malformed text: indentation, a key without `:`, unterminated quotes or brackets, ...
        case syntax
        /// A YAML feature outside the subset: anchors, aliases, tags, merge keys, `>` ...
        case unsupported
        /// A key repeated in one mapping; the error's position is the first occurrence, `again`
        /// the repetition. `key` is the key's text, for a caller that knows which key names are
        /// safe to show (the message never contains it).
        case duplicateKey(key: String, again: YAMLMark)
        /// `---` after content.
        case secondDocument
        /// Nesting deeper than the limit.
        case tooDeep
        /// A character YAML does not allow (control characters, a misplaced byte order mark).
        case badCharacter
    }

    /// The class of problem.
    public var kind: Kind
    /// 1-based line.
    public var line: Int
    /// 1-based column.
    public var column: Int
    /// What is wrong, without quoting the document.
    public var message: String

    /// An error.
    public init(_ kind: Kind, at mark: YAMLMark, _ message: String) {
        self.kind = kind
        self.line = mark.line
        self.column = mark.column
        self.message = message
    }

    /// `line:column: message`.
    public var description: String { "\(line):\(column): \(message)" }
}
