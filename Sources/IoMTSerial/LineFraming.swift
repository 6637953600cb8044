/// Splits a byte stream into text lines ending in LF (a CR before it is dropped), bounded in
/// length: an over-long line (noise, a wrong baud rate) is thrown away up to the next LF.
/// Lines with bytes outside printable ASCII are thrown away too. Chunking never matters:
/// bytes are handled one at a time.
struct LineFraming: Sendable {
    let maxLength: Int
    private var line: [UInt8] = []
    private var overflow = false
    private var discarded = 0

    init(maxLength: Int) {
        self.maxLength = maxLength
        line.reserveCapacity(maxLength)
    }

    /// Feeds one byte; returns a complete, printable line (without CR LF), if this byte ended one.
    /// `discardedBefore` is set to the count of bytes thrown away since the last good line.
    mutating func push(_ byte: UInt8, discardedBefore: inout Int) -> [UInt8]? {
        if byte == 0x0A {
            defer { line.removeAll(keepingCapacity: true); overflow = false }
            if line.last == 0x0D { line.removeLast() }
            let printable = line.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
            if overflow || !printable || line.isEmpty {
                discarded += line.count + 1 + (overflow ? maxLength : 0)
                return nil
            }
            discardedBefore = discarded
            discarded = 0
            return line
        }
        if overflow { discarded += 1; return nil }
        if line.count >= maxLength {
            overflow = true
            line.removeAll(keepingCapacity: true)
            discarded += 1
            return nil
        }
        line.append(byte)
        return nil
    }

    /// Counts a line that was framed correctly but rejected by the parser.
    mutating func reject(_ count: Int) { discarded += count }
}
