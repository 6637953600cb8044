/// A strict parser for the YAML subset the agent's configuration uses.
///
/// Accepted: block mappings and sequences by indentation (spaces only), `- key: value` items,
/// flow `[...]` and `{...}` on one or more lines, plain, single-quoted and double-quoted
/// scalars (each on one line), literal block scalars (`|`, `|-`, `|+`), comments, and one
/// optional `---` at the top.
///
/// Refused with a ``YAMLError`` (line, column, a message that never quotes the text):
/// anchors, aliases, tags, merge keys, explicit keys, folded scalars, directives, a second
/// document, duplicate keys, tabs in indentation, control characters, unterminated quotes and
/// brackets, keys without `:`, and nesting deeper than `maxDepth`.
///
/// The work is linear in the input and the recursion depth is bounded by `maxDepth`.
public enum YAMLParser {
    /// The default nesting limit.
    public static let defaultMaxDepth = 64

    /// Parses one document. Nil for a document with no content (empty, comments only).
    ///
    /// - Parameters:
    ///   - text: the YAML text.
    ///   - maxDepth: the deepest nesting of mappings and sequences accepted.
    /// - Throws: ``YAMLError`` for anything outside the subset.
    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws(YAMLError) -> YAMLNode? {
        let bytes = try prepare(text)
        var scanner = Scanner(bytes: bytes, maxDepth: max(1, maxDepth))
        return try scanner.document()
    }

    /// Checks the characters and normalizes line breaks to `\n` (a byte order mark at the
    /// start is dropped).
    static func prepare(_ text: String) throws(YAMLError) -> [UInt8] {
        var line = 1, column = 1
        var first = true
        var previousCR = false
        for scalar in text.unicodeScalars {
            let v = scalar.value
            defer { first = false }
            if v == 0xFEFF {
                if first { continue }
                throw YAMLError(.badCharacter, at: YAMLMark(line: line, column: column),
                                "a byte order mark is only allowed at the start")
            }
            if v == 0x0A {
                if !previousCR { line += 1; column = 1 }
                previousCR = false
                continue
            }
            if v == 0x0D {
                line += 1; column = 1
                previousCR = true
                continue
            }
            previousCR = false
            let allowed = v == 0x09 || (v >= 0x20 && v < 0x7F) || v == 0x85
                || (v >= 0xA0 && v != 0xFFFE && v != 0xFFFF)
            if !allowed {
                throw YAMLError(.badCharacter, at: YAMLMark(line: line, column: column),
                                "control characters are not allowed (U+\(hex4(v)))")
            }
            column += 1
        }
        let body = text.unicodeScalars.first == "\u{FEFF}" ? String(text.unicodeScalars.dropFirst()) : text
        var out: [UInt8] = []
        out.reserveCapacity(body.utf8.count)
        var skipLF = false
        for byte in body.utf8 {
            if skipLF && byte == 0x0A { skipLF = false; continue }
            skipLF = false
            if byte == 0x0D { out.append(0x0A); skipLF = true; continue }
            out.append(byte)
        }
        return out
    }

    static func hex4(_ v: UInt32) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}

private let space: UInt8 = 0x20
private let tab: UInt8 = 0x09
private let newline: UInt8 = 0x0A

/// Where a node starts: decides what may start there.
private enum ValueContext {
    /// On the line of its `key:` (a scalar or a flow collection only: `key: - a` and
    /// `key: b: c` are errors).
    case afterKey
    /// On a line of its own or after `- ` (anything: `- - a`, `- key: value`).
    case open
}

/// The byte scanner and recursive-descent parser (depth bounded by `maxDepth`).
private struct Scanner {
    let bytes: [UInt8]
    let maxDepth: Int
    var pos = 0
    var line = 1
    var column = 1

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    // MARK: Low level

    var mark: YAMLMark { YAMLMark(line: line, column: column) }
    var atEnd: Bool { pos >= bytes.count }

    func peek(_ offset: Int = 0) -> UInt8? {
        let i = pos + offset
        return i >= 0 && i < bytes.count ? bytes[i] : nil
    }

    mutating func advance() {
        guard pos < bytes.count else { return }
        let b = bytes[pos]
        pos += 1
        if b == newline {
            line += 1
            column = 1
        } else if b & 0xC0 != 0x80 {
            column += 1
        }
    }

    /// True if the byte at `offset` is a space, tab, line break or the end.
    func isBlankOrEnd(_ offset: Int = 0) -> Bool {
        guard let b = peek(offset) else { return true }
        return b == space || b == tab || b == newline
    }

    mutating func skipSpaces() {
        while let b = peek(), b == space || b == tab { advance() }
    }

    mutating func skipToLineEnd() {
        while let b = peek(), b != newline { advance() }
    }

    func fail(_ kind: YAMLError.Kind, _ message: String, at m: YAMLMark? = nil) -> YAMLError {
        YAMLError(kind, at: m ?? mark, message)
    }

    func fail(_ message: String, at m: YAMLMark? = nil) -> YAMLError {
        YAMLError(.syntax, at: m ?? mark, message)
    }

    /// After a value on a line: only spaces and a comment may follow. Leaves the scanner at the
    /// start of the next line.
    mutating func finishLine() throws(YAMLError) {
        skipSpaces()
        if let b = peek(), b != newline {
            if b == UInt8(ascii: "#") && isBlankOrEnd(-1) {
                skipToLineEnd()
            } else if b == UInt8(ascii: "#") {
                throw fail("a comment needs a space before '#'")
            } else {
                throw fail("unexpected text after the value (one value per line; use quotes for text containing ': ' or ' #')")
            }
        }
        if peek() == newline { advance() }
    }

    /// True if the scanner is at column 1 on `---` or `...` followed by a blank or the end.
    func atDocumentMarker() -> Bool {
        guard column == 1, let a = peek(), a == UInt8(ascii: "-") || a == UInt8(ascii: ".") else { return false }
        return peek(1) == a && peek(2) == a && isBlankOrEnd(3)
    }

    /// From the start of a line, skips blank and comment-only lines; stops on the first
    /// character of the next content line (its indentation is `column - 1`) or at the end.
    /// A tab before content in the indentation is an error.
    mutating func skipToContent() throws(YAMLError) {
        while !atEnd {
            var tabMark: YAMLMark?
            while let b = peek(), b == space || b == tab {
                if b == tab && tabMark == nil { tabMark = mark }
                advance()
            }
            guard let b = peek() else { return }
            if b == newline { advance(); continue }
            if b == UInt8(ascii: "#") { skipToLineEnd(); continue }
            if let tabMark {
                throw fail("a tab in the indentation; indent with spaces only", at: tabMark)
            }
            return
        }
    }

    var indent: Int { column - 1 }

    func isDashItem() -> Bool { peek() == UInt8(ascii: "-") && isBlankOrEnd(1) }

    // MARK: Document

    mutating func document() throws(YAMLError) -> YAMLNode? {
        try skipToContent()
        if peek() == UInt8(ascii: "%") && column == 1 {
            throw fail(.unsupported, "YAML directives ('%') are not supported")
        }
        if atDocumentMarker() {
            if peek() == UInt8(ascii: ".") {
                throw fail(.unsupported, "document end markers ('...') are not supported")
            }
            advance(); advance(); advance()
            skipSpaces()
            if let b = peek(), b != newline, b != UInt8(ascii: "#") {
                throw fail(.unsupported, "content on the '---' line is not supported; start it on the next line")
            }
            try finishLine()
            try skipToContent()
        }
        if atEnd { return nil }
        if atDocumentMarker() { try trailing() }
        let root = try blockNode(parentIndent: -1, depth: 1, context: .open)
        if !atEnd { try trailing() }
        return root
    }

    /// Content left after the root node.
    mutating func trailing() throws(YAMLError) {
        if atDocumentMarker() {
            if peek() == UInt8(ascii: "-") {
                throw fail(.secondDocument, "a second document ('---') is not allowed: only one document per file")
            }
            throw fail(.unsupported, "document end markers ('...') are not supported")
        }
        throw fail("bad indentation: this line does not line up with the lines above it")
    }

    // MARK: Block nodes

    func checkDepth(_ depth: Int) throws(YAMLError) {
        if depth > maxDepth {
            throw fail(.tooDeep, "nesting is deeper than \(maxDepth) levels")
        }
    }

    /// Refuses indicators outside the subset at the start of a node.
    func refuseUnsupported(flow: Bool) throws(YAMLError) {
        guard let b = peek() else { return }
        switch b {
        case UInt8(ascii: "&"): throw fail(.unsupported, "anchors ('&') are not supported; write the value out")
        case UInt8(ascii: "*"): throw fail(.unsupported, "aliases ('*') are not supported; write the value out")
        case UInt8(ascii: "!"): throw fail(.unsupported, "tags ('!') are not supported")
        case UInt8(ascii: "%"): throw fail(.unsupported, "'%' cannot start a value; quote it")
        case UInt8(ascii: "@"), UInt8(ascii: "`"): throw fail("'@' and '`' cannot start a value; quote it")
        case UInt8(ascii: "?") where isBlankOrEnd(1):
            throw fail(.unsupported, "explicit keys ('? ') are not supported")
        case UInt8(ascii: ">"): throw fail(.unsupported, "folded block scalars ('>') are not supported; use '|' or a quoted value")
        case UInt8(ascii: "|") where flow: throw fail("a block scalar ('|') cannot appear inside [ ] or { }")
        case UInt8(ascii: "#"): throw fail("a comment needs a space before '#'")
        case UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: ","):
            throw fail(flow ? "expected a value (an empty entry)" : "a value cannot start with ']', '}' or ','; quote it")
        default: return
        }
    }

    /// A node starting at the current position (the first character of its line, or after
    /// `- `). Ends at the next content line.
    mutating func blockNode(parentIndent: Int, depth: Int, context: ValueContext) throws(YAMLError) -> YAMLNode {
        let c = indent
        if isDashItem() {
            if context == .afterKey {
                throw fail("a list cannot start on the key's line; put '- ' items on the next lines")
            }
            return try blockSequence(indent: c, depth: depth)
        }
        try refuseUnsupported(flow: false)
        if peek() == UInt8(ascii: "|") {
            return try literal(parentIndent: parentIndent)
        }
        let start = mark
        let first: YAMLNode
        if let b = peek(), b == UInt8(ascii: "[") || b == UInt8(ascii: "{") {
            first = try flowNode(blockIndent: parentIndent, depth: depth)
            skipSpaces()
            if peek() == UInt8(ascii: ":") && isBlankOrEnd(1) {
                throw fail(.unsupported, "a [ ] or { } collection cannot be a key", at: start)
            }
            try finishLine()
            try skipToContent()
            return first
        }
        let key = try scalar(flow: false)
        skipSpaces()
        if peek() == UInt8(ascii: ":") && isBlankOrEnd(1) {
            if context == .afterKey {
                throw fail("a mapping cannot start on the key's line; put its keys on the next lines, indented", at: start)
            }
            return try blockMapping(indent: start.column - 1, firstKey: key, depth: depth)
        }
        try finishLine()
        try skipToContent()
        return .scalar(key)
    }

    mutating func blockMapping(indent c: Int, firstKey: YAMLScalar, depth: Int) throws(YAMLError) -> YAMLNode {
        try checkDepth(depth)
        var pairs: [(key: YAMLNode, value: YAMLNode)] = []
        var seen: [String: YAMLMark] = [:]
        var key = firstKey
        let start = firstKey.mark
        while true {
            // At the ':' after `key`.
            try checkKey(key, seen: &seen)
            let colon = mark
            advance()
            let value = try valueAfterIndicator(blockIndent: c, depth: depth + 1, context: .afterKey,
                                                emptyMark: YAMLMark(line: colon.line, column: colon.column + 1))
            pairs.append((key: .scalar(key), value: value))
            if atEnd || atDocumentMarker() || indent < c { break }
            if indent > c { throw fail("bad indentation: this line is indented more than the keys above it") }
            if isDashItem() {
                throw fail("a list item where a key was expected (at the indentation of the keys above it)")
            }
            try refuseUnsupported(flow: false)
            if let b = peek(), b == UInt8(ascii: "[") || b == UInt8(ascii: "{") {
                throw fail(.unsupported, "a [ ] or { } collection cannot be a key")
            }
            if peek() == UInt8(ascii: "|") { throw fail("expected a key") }
            let keyMark = mark
            key = try scalar(flow: false)
            skipSpaces()
            guard peek() == UInt8(ascii: ":") && isBlankOrEnd(1) else {
                throw fail("a key without ':' (expected 'key: value')", at: keyMark)
            }
        }
        return .mapping(YAMLMapping(pairs: pairs, mark: start))
    }

    /// Merge keys and duplicates.
    func checkKey(_ key: YAMLScalar, seen: inout [String: YAMLMark]) throws(YAMLError) {
        if key.style == .plain && key.string == "<<" {
            throw YAMLError(.unsupported, at: key.mark, "merge keys ('<<') are not supported; write the keys out")
        }
        if let first = seen[key.string] {
            throw YAMLError(.duplicateKey(key: key.string, again: key.mark), at: first,
                            "a key appears more than once in the same mapping (first here, again at line \(key.mark.line))")
        }
        seen[key.string] = key.mark
    }

    mutating func blockSequence(indent c: Int, depth: Int) throws(YAMLError) -> YAMLNode {
        try checkDepth(depth)
        var items: [YAMLNode] = []
        let start = mark
        while true {
            let dash = mark
            advance()
            let item = try valueAfterIndicator(blockIndent: c, depth: depth + 1, context: .open, emptyMark: dash)
            items.append(item)
            if atEnd || atDocumentMarker() || indent < c { break }
            if indent > c { throw fail("bad indentation: this line is indented more than the list items above it") }
            if !isDashItem() { break }
        }
        return .sequence(YAMLSequence(items: items, mark: start))
    }

    /// The value after `key:` or `- `: on the same line, on the following more indented lines
    /// (or, for a mapping value, `- ` items at the key's indentation), or empty.
    mutating func valueAfterIndicator(blockIndent c: Int, depth: Int, context: ValueContext,
                                      emptyMark: YAMLMark) throws(YAMLError) -> YAMLNode {
        skipSpaces()
        if atEnd || peek() == newline || peek() == UInt8(ascii: "#") {
            try finishLine()
            try skipToContent()
            if atEnd || atDocumentMarker() {
                return .scalar(YAMLScalar(string: "", style: .plain, mark: emptyMark))
            }
            if indent > c {
                return try blockNode(parentIndent: c, depth: depth, context: .open)
            }
            if indent == c && context == .afterKey && isDashItem() {
                return try blockSequence(indent: c, depth: depth)
            }
            return .scalar(YAMLScalar(string: "", style: .plain, mark: emptyMark))
        }
        return try blockNode(parentIndent: c, depth: depth, context: context)
    }

    // MARK: Literal block scalars

    mutating func literal(parentIndent n: Int) throws(YAMLError) -> YAMLNode {
        let start = mark
        advance()
        var chomp: UInt8 = 0
        if let b = peek(), b == UInt8(ascii: "-") || b == UInt8(ascii: "+") { chomp = b; advance() }
        if let b = peek(), b >= 0x30 && b <= 0x39 {
            throw fail(.unsupported, "indentation indicators on block scalars are not supported")
        }
        if let b = peek(), b == UInt8(ascii: "-") || b == UInt8(ascii: "+") {
            throw fail("a block scalar header has at most one chomping indicator")
        }
        try finishLine()
        var content: [UInt8] = []
        var contentIndent: Int?
        while !atEnd {
            // Count the leading spaces of this line without consuming it yet.
            var i = pos
            while i < bytes.count, bytes[i] == space { i += 1 }
            let spaces = i - pos
            let blank = i >= bytes.count || bytes[i] == newline
            if blank {
                if let ci = contentIndent, spaces > ci {
                    content.append(contentsOf: bytes[(pos + ci)..<i])
                }
                content.append(newline)
                while pos < i { advance() }
                if !atEnd { advance() }
                continue
            }
            if contentIndent == nil {
                if spaces <= n { break }
                contentIndent = spaces
            }
            guard let ci = contentIndent, spaces >= ci else { break }
            while pos < i - (spaces - ci) { advance() }
            let lineStart = pos
            skipToLineEnd()
            content.append(contentsOf: bytes[lineStart..<pos])
            content.append(newline)
            if !atEnd { advance() }
        }
        // Chomping.
        var end = content.count
        while end > 0, content[end - 1] == newline { end -= 1 }
        var text = Array(content[0..<end])
        switch chomp {
        case UInt8(ascii: "-"): break
        case UInt8(ascii: "+"): text = content
        default: if !text.isEmpty { text.append(newline) }
        }
        // Back at the start of a line; position on the next content.
        if !atEnd, column != 1 { try finishLine() }
        try skipToContent()
        return .scalar(YAMLScalar(string: String(decoding: text, as: UTF8.self), style: .literal, mark: start))
    }

    // MARK: Scalars

    /// A plain or quoted scalar on the current line.
    mutating func scalar(flow: Bool) throws(YAMLError) -> YAMLScalar {
        let start = mark
        switch peek() {
        case UInt8(ascii: "'"): return try singleQuoted()
        case UInt8(ascii: "\""): return try doubleQuoted()
        default: break
        }
        if let b = peek(), !flow, b == UInt8(ascii: "-") || b == UInt8(ascii: ":") || b == UInt8(ascii: "?") {
            if isBlankOrEnd(1) { throw fail("a value cannot be a lone '\(Character(Unicode.Scalar(b)))'") }
        }
        var text: [UInt8] = []
        var lastNonBlank = 0
        while let b = peek(), b != newline {
            if b == UInt8(ascii: ":") {
                let n = peek(1)
                if n == nil || n == space || n == tab || n == newline { break }
                if flow, let n, isFlowIndicator(n) { break }
            }
            if flow && isFlowIndicator(b) { break }
            if b == space || b == tab {
                // A run of blanks: part of the value unless a comment or the line end follows.
                var i = pos
                while i < bytes.count, bytes[i] == space || bytes[i] == tab { i += 1 }
                if i >= bytes.count || bytes[i] == newline || bytes[i] == UInt8(ascii: "#") { break }
                while pos < i { text.append(bytes[pos]); advance() }
                continue
            }
            text.append(b)
            lastNonBlank = text.count
            advance()
        }
        text.removeLast(text.count - lastNonBlank)
        if text.isEmpty { throw fail("expected a value", at: start) }
        return YAMLScalar(string: String(decoding: text, as: UTF8.self), style: .plain, mark: start)
    }

    func isFlowIndicator(_ b: UInt8) -> Bool {
        b == UInt8(ascii: ",") || b == UInt8(ascii: "[") || b == UInt8(ascii: "]")
            || b == UInt8(ascii: "{") || b == UInt8(ascii: "}")
    }

    mutating func singleQuoted() throws(YAMLError) -> YAMLScalar {
        let start = mark
        advance()
        var text: [UInt8] = []
        while true {
            guard let b = peek(), b != newline else {
                throw fail("unterminated quoted value (quotes must close on the line they open)", at: start)
            }
            advance()
            if b == UInt8(ascii: "'") {
                if peek() == UInt8(ascii: "'") { text.append(b); advance(); continue }
                break
            }
            text.append(b)
        }
        try afterQuote()
        return YAMLScalar(string: String(decoding: text, as: UTF8.self), style: .singleQuoted, mark: start)
    }

    mutating func doubleQuoted() throws(YAMLError) -> YAMLScalar {
        let start = mark
        advance()
        var text = ""
        var run: [UInt8] = []
        while true {
            guard let b = peek(), b != newline else {
                throw fail("unterminated quoted value (quotes must close on the line they open)", at: start)
            }
            if b == UInt8(ascii: "\"") { advance(); break }
            if b != UInt8(ascii: "\\") { run.append(b); advance(); continue }
            let escape = mark
            advance()
            guard let e = peek(), e != newline else {
                throw fail(.unsupported, "a line continuation ('\\' at the end of the line) is not supported", at: escape)
            }
            advance()
            var scalarValue: UInt32?
            switch e {
            case UInt8(ascii: "0"): scalarValue = 0
            case UInt8(ascii: "a"): scalarValue = 7
            case UInt8(ascii: "b"): scalarValue = 8
            case UInt8(ascii: "t"), tab: scalarValue = 9
            case UInt8(ascii: "n"): scalarValue = 10
            case UInt8(ascii: "v"): scalarValue = 11
            case UInt8(ascii: "f"): scalarValue = 12
            case UInt8(ascii: "r"): scalarValue = 13
            case UInt8(ascii: "e"): scalarValue = 27
            case space: scalarValue = 32
            case UInt8(ascii: "\""): scalarValue = 34
            case UInt8(ascii: "/"): scalarValue = 47
            case UInt8(ascii: "\\"): scalarValue = 92
            case UInt8(ascii: "N"): scalarValue = 0x85
            case UInt8(ascii: "_"): scalarValue = 0xA0
            case UInt8(ascii: "L"): scalarValue = 0x2028
            case UInt8(ascii: "P"): scalarValue = 0x2029
            case UInt8(ascii: "x"): scalarValue = try hexEscape(2, at: escape)
            case UInt8(ascii: "u"): scalarValue = try hexEscape(4, at: escape)
            case UInt8(ascii: "U"): scalarValue = try hexEscape(8, at: escape)
            default: break
            }
            guard let v = scalarValue, let u = Unicode.Scalar(v) else {
                throw fail("invalid escape sequence in a double-quoted value", at: escape)
            }
            text += String(decoding: run, as: UTF8.self)
            run.removeAll(keepingCapacity: true)
            text.unicodeScalars.append(u)
        }
        text += String(decoding: run, as: UTF8.self)
        try afterQuote()
        return YAMLScalar(string: text, style: .doubleQuoted, mark: start)
    }

    mutating func hexEscape(_ digits: Int, at escape: YAMLMark) throws(YAMLError) -> UInt32? {
        var v: UInt32 = 0
        for _ in 0..<digits {
            guard let b = peek() else { return nil }
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw fail("invalid escape sequence in a double-quoted value", at: escape)
            }
            v = v &* 16 &+ d
            advance()
        }
        return v
    }

    /// After a closing quote: a blank, the end, ':' or (in flow) an indicator.
    func afterQuote() throws(YAMLError) {
        guard let b = peek() else { return }
        if b == space || b == tab || b == newline || b == UInt8(ascii: ":") || isFlowIndicator(b) { return }
        throw fail("unexpected text right after a closing quote")
    }

    // MARK: Flow collections

    /// Skips spaces, line breaks and comments inside a flow collection; continuation lines must
    /// be indented more than `blockIndent`.
    mutating func skipFlowSpace(blockIndent: Int, open: YAMLMark, closer: Character) throws(YAMLError) {
        var afterBlank = pos == 0 || isBlankOrEnd(-1)
        while let b = peek() {
            if b == space || b == tab { afterBlank = true; advance(); continue }
            if b == newline {
                advance()
                afterBlank = true
                var tabMark: YAMLMark?
                while let c = peek(), c == space || c == tab {
                    if c == tab && tabMark == nil { tabMark = mark }
                    advance()
                }
                guard let c = peek(), c != newline, c != UInt8(ascii: "#") else { continue }
                if let tabMark { throw fail("a tab in the indentation; indent with spaces only", at: tabMark) }
                let closes = c == UInt8(ascii: "]") || c == UInt8(ascii: "}")
                if indent < blockIndent || (indent == blockIndent && !closes) || atDocumentMarker() {
                    throw fail("expected '\(closer)' to close the collection opened at line \(open.line), column \(open.column) (continuation lines must be indented more than the key)")
                }
                continue
            }
            if b == UInt8(ascii: "#") && afterBlank { skipToLineEnd(); continue }
            return
        }
        throw fail("unterminated collection: '\(closer)' is missing", at: open)
    }

    mutating func flowNode(blockIndent: Int, depth: Int) throws(YAMLError) -> YAMLNode {
        switch peek() {
        case UInt8(ascii: "["): return try flowSequence(blockIndent: blockIndent, depth: depth)
        case UInt8(ascii: "{"): return try flowMapping(blockIndent: blockIndent, depth: depth)
        default: break
        }
        try refuseUnsupported(flow: true)
        if let b = peek(), b == UInt8(ascii: ",") || b == UInt8(ascii: "]") || b == UInt8(ascii: "}") {
            throw fail("expected a value (an empty entry)")
        }
        if peek() == UInt8(ascii: "-") && isBlankOrEnd(1) {
            throw fail("'- ' items cannot appear inside [ ] or { }")
        }
        return .scalar(try scalar(flow: true))
    }

    mutating func flowSequence(blockIndent: Int, depth: Int) throws(YAMLError) -> YAMLNode {
        try checkDepth(depth)
        let open = mark
        advance()
        var items: [YAMLNode] = []
        while true {
            try skipFlowSpace(blockIndent: blockIndent, open: open, closer: "]")
            if peek() == UInt8(ascii: "]") { advance(); break }
            let item = try flowNode(blockIndent: blockIndent, depth: depth + 1)
            items.append(item)
            try skipFlowSpace(blockIndent: blockIndent, open: open, closer: "]")
            if peek() == UInt8(ascii: ":") {
                throw fail(.unsupported, "'key: value' pairs inside [ ] are not supported; use { }")
            }
            if peek() == UInt8(ascii: ",") { advance(); continue }
            if peek() == UInt8(ascii: "]") { advance(); break }
            throw fail("expected ',' or ']' in the list opened at line \(open.line), column \(open.column)")
        }
        return .sequence(YAMLSequence(items: items, mark: open))
    }

    mutating func flowMapping(blockIndent: Int, depth: Int) throws(YAMLError) -> YAMLNode {
        try checkDepth(depth)
        let open = mark
        advance()
        var pairs: [(key: YAMLNode, value: YAMLNode)] = []
        var seen: [String: YAMLMark] = [:]
        while true {
            try skipFlowSpace(blockIndent: blockIndent, open: open, closer: "}")
            if peek() == UInt8(ascii: "}") { advance(); break }
            if let b = peek(), b == UInt8(ascii: "[") || b == UInt8(ascii: "{") {
                throw fail(.unsupported, "a [ ] or { } collection cannot be a key")
            }
            try refuseUnsupported(flow: true)
            if let b = peek(), b == UInt8(ascii: ",") || b == UInt8(ascii: "]") {
                throw fail("expected a key (an empty entry)")
            }
            let keyMark = mark
            let key = try scalar(flow: true)
            try skipFlowSpace(blockIndent: blockIndent, open: open, closer: "}")
            guard peek() == UInt8(ascii: ":") else {
                throw fail("a key without ':' (expected 'key: value')", at: keyMark)
            }
            try checkKey(key, seen: &seen)
            let colon = mark
            advance()
            try skipFlowSpace(blockIndent: blockIndent, open: open, closer: "}")
            let value: YAMLNode
            if let b = peek(), b == UInt8(ascii: ",") || b == UInt8(ascii: "}") {
                value = .scalar(YAMLScalar(string: "", style: .plain, mark: YAMLMark(line: colon.line, column: colon.column + 1)))
            } else {
                value = try flowNode(blockIndent: blockIndent, depth: depth + 1)
            }
            pairs.append((key: .scalar(key), value: value))
            try skipFlowSpace(blockIndent: blockIndent, open: open, closer: "}")
            if peek() == UInt8(ascii: ",") { advance(); continue }
            if peek() == UInt8(ascii: "}") { advance(); break }
            throw fail("expected ',' or '}' in the mapping opened at line \(open.line), column \(open.column)")
        }
        return .mapping(YAMLMapping(pairs: pairs, mark: open))
    }
}
