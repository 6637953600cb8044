/// Splits a byte stream into text lines ending in LF (a CR before it is dropped), bounded in
/// length: an over-long line (noise, a wrong baud rate) is thrown away up to the next LF.
/// Lines with bytes outside printable ASCII are thrown away too. Chunking never matters:
/// bytes are handled one at a time. Discarded bytes are counted exactly (CR and LF included).
struct LineFraming: Sendable {
    let maxLength: Int
    private var line: [UInt8] = []
    private var overflow = false
    /// Bytes of the current line so far, as received (including ones dropped by overflow).
    private var raw = 0
    private var discarded = 0
    /// Raw size (with CR LF) of the line `push` returned last.
    private(set) var lastLineRawCount = 0

    init(maxLength: Int) {
        self.maxLength = maxLength
        line.reserveCapacity(maxLength)
    }

    /// Feeds one byte; returns a complete, printable line (without CR LF), if this byte ended one.
    /// `discardedBefore` is set to the count of bytes thrown away since the last good line.
    mutating func push(_ byte: UInt8, discardedBefore: inout Int) -> [UInt8]? {
        raw += 1
        if byte == 0x0A {
            defer { line.removeAll(keepingCapacity: true); overflow = false; raw = 0 }
            if line.last == 0x0D { line.removeLast() }
            let printable = line.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
            if overflow || !printable || line.isEmpty {
                discarded += raw
                return nil
            }
            discardedBefore = discarded
            discarded = 0
            lastLineRawCount = raw
            return line
        }
        if overflow { return nil }
        if line.count >= maxLength {
            overflow = true
            line.removeAll(keepingCapacity: true)
            return nil
        }
        line.append(byte)
        return nil
    }

    /// Counts bytes that were framed correctly but rejected by the parser.
    mutating func reject(_ count: Int) { discarded += count }
}
