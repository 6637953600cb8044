/// Byte sizes as written in the configuration: a plain integer (bytes) or a number with a
/// unit, `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024) or `KB`/`MB`/`GB`/`TB` (powers of 1000),
/// or `B`. Whitespace between number and unit is allowed (`256 MiB`).
public enum ByteSize {
    /// The accepted units and their multipliers.
    public static let units: [(name: String, bytes: Int64)] = [
        ("B", 1),
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
        ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
    ]

    /// Parses `"256MiB"`, `"1 GB"` or `"65536"`. Nil if malformed or too large for `Int64`.
    public static func parse(_ text: String) -> Int64? {
        let s = text.trimmingSpaces
        let digits = s.prefix { $0.isASCII && $0.isNumber || $0 == "_" }
        guard let first = digits.first, first != "_" else { return nil }
        let unit = s.dropFirst(digits.count).trimmingSpaces
        guard let number = Int64(digits.filter { $0 != "_" }) else { return nil }
        let multiplier: Int64
        if unit.isEmpty {
            multiplier = 1
        } else if let u = units.first(where: { $0.name == unit }) {
            multiplier = u.bytes
        } else {
            return nil
        }
        let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }

    /// Renders bytes in the largest binary unit that divides them exactly (`268435456` → `256MiB`).
    public static func format(_ bytes: Int64) -> String {
        for (name, size) in [("TiB", Int64(1) << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        where bytes >= size && bytes % size == 0 {
            return "\(bytes / size)\(name)"
        }
        return "\(bytes)B"
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
