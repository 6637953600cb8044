/// A bounds-checked reader over device bytes. Every read names the field it wanted, so a
/// short or malformed packet becomes a `ByteReaderError` that says which field was missing,
/// never a trap.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    public mutating func u8(_ field: StaticString) throws(ByteReaderError) -> UInt8 {
        try need(1, field)
        defer { offset += 1 }
        return bytes[offset]
    }

    /// Little-endian (Bluetooth byte order).
    public mutating func u16le(_ field: StaticString) throws(ByteReaderError) -> UInt16 {
        try need(2, field)
        defer { offset += 2 }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    public mutating func u16be(_ field: StaticString) throws(ByteReaderError) -> UInt16 {
        try need(2, field)
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    public mutating func u24le(_ field: StaticString) throws(ByteReaderError) -> UInt32 {
        try need(3, field)
        defer { offset += 3 }
        return UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
    }

    public mutating func u32le(_ field: StaticString) throws(ByteReaderError) -> UInt32 {
        try need(4, field)
        defer { offset += 4 }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
        return v
    }

    public mutating func bytes(_ count: Int, _ field: StaticString) throws(ByteReaderError) -> ArraySlice<UInt8> {
        guard count >= 0 else { throw ByteReaderError(field: "\(field)", needed: count, available: remaining) }
        try need(count, field)
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    public mutating func skip(_ count: Int, _ field: StaticString) throws(ByteReaderError) {
        _ = try bytes(count, field)
    }

    private func need(_ n: Int, _ field: StaticString) throws(ByteReaderError) {
        if remaining < n { throw ByteReaderError(field: "\(field)", needed: n, available: remaining) }
    }
}

/// A device packet ended before a field it promised.
public struct ByteReaderError: Error, Hashable, Sendable, CustomStringConvertible {
    public var field: String
    public var needed: Int
    public var available: Int
    public var description: String {
        "truncated packet: field '\(field)' needs \(needed) byte(s), \(available) left"
    }
}
