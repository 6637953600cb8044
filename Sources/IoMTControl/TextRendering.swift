import IoMTRegistry

/// Plain-text rendering of command results for people (`--json` prints the result as is).
public enum TextRendering {
    /// Left-aligned columns separated by two spaces.
    public static func table(_ headers: [String], _ rows: [[String]]) -> String {
        var widths = headers.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            var out = ""
            for (i, c) in cells.enumerated() {
                out += c
                if i < cells.count - 1 { out += String(repeating: " ", count: widths[i] - c.count + 2) }
            }
            return out
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }

    static func s(_ v: JSONValue?) -> String {
        switch v {
        case nil, .null?: "-"
        case .string(let x)?: x
        case .int(let i)?: String(i)
        case .double(let d)?: d == d.rounded() ? String(Int64(d)) : String((d * 10).rounded() / 10)
        case .bool(let b)?: b ? "yes" : "no"
        case let other?: other.text
        }
    }

    public static func status(_ r: JSONValue) -> String {
        var out: [String] = []
        let daemon = r["daemon"]?.boolValue ?? false
        out.append("agent:    \(daemon ? "running" : "not running") (gateway \(s(r["gateway_id"])), version \(s(r["version"])))")
        let b = r["broker"]
        let urls = b?["urls"]?.arrayValue?.map { s($0) }.joined(separator: ", ") ?? "-"
        out.append("broker:   \(s(b?["state"]))" + (b?["connected_to"]?.stringValue.map { " to \($0)" } ?? "") + " (configured: \(urls))")
        let buf = r["buffer"]
        let age = buf?["oldest_unsent_age_s"].flatMap { $0.isNull ? nil : "\(s($0)) s" } ?? "none"
        out.append("buffer:   \(s(buf?["messages"])) message(s), \(s(buf?["bytes"])) of \(s(buf?["max_bytes"])) bytes, oldest unsent \(age), in flight \(s(buf?["in_flight"]))")
        out.append("lost:     \(s(r["readings_lost"])) reading(s)" + lostDetail(buf?["lost_by_device"]))
        out.append("bluetooth: \(r["bluetooth_adapter"].flatMap { $0.isNull ? nil : s($0) } ?? s(r["bluetooth"]))")
        let sources = r["sources"]?.arrayValue ?? []
        out.append("sources:")
        if sources.isEmpty { out.append("  (none)") } else {
            out.append(indent(table(["DEVICE", "PROFILE", "TRANSPORT", "CONNECTED", "LAST READING", "DETAIL"], sources.map { d in
                [s(d["id"]), s(d["profile"]), s(d["transport"]), s(d["connected"]), s(d["last_reading_at"]), s(d["detail"])]
            })))
        }
        let ports = r["serial_ports"]?.arrayValue ?? []
        if !ports.isEmpty {
            out.append("serial ports:")
            out.append(indent(table(["DEVICE", "PORT", "PROFILE", "CONNECTED"], ports.map { p in
                [s(p["id"]), s(p["port"]), s(p["profile"]), s(p["connected"])]
            })))
        }
        if let problem = r["registry"]?["recovered"]?.stringValue { out.append("registry: \(problem)") }
        return out.joined(separator: "\n")
    }

    static func lostDetail(_ v: JSONValue?) -> String {
        guard let m = v?.objectValue, !m.isEmpty else { return "" }
        return " (" + m.map { "\($0.key): \(s($0.value))" }.joined(separator: ", ") + ")"
    }

    static func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n")
    }

    public static func devices(_ r: JSONValue) -> String {
        let list = r["devices"]?.arrayValue ?? []
        if list.isEmpty { return "no devices (pair one with `iomt-agent pair ADDRESS --patient ID`)" }
        return table(["DEVICE", "PATIENT", "PROFILE", "SERIAL", "BATTERY", "LAST READING", "LINK", "BUFFERED", "LOST"], list.map { d in
            [s(d["id"]), s(d["patient_id"]), s(d["profile"]), s(d["serial_number"]),
             d["battery"]?.intValue.map { "\($0)%" } ?? "-", s(d["last_reading_at"]), s(d["link"]),
             s(d["buffered"]), s(d["lost"])]
        })
    }

    public static let scanHeaders = ["ADDRESS", "TYPE", "NAME", "RSSI", "SERVICES", "PROFILE", "PAIRED"]
    static let scanWidths = [17, 6, 20, 5, 24, 16, 6]

    /// One line of the live scan table, fixed column widths so rows printed as they arrive line
    /// up under the header (long cells are cut with `…`).
    public static func scanLine(_ cells: [String]) -> String {
        var out = ""
        for (i, c) in cells.enumerated() {
            let w = i < scanWidths.count ? scanWidths[i] : c.count
            let cell = c.count > w ? String(c.prefix(w - 1)) + "…" : c
            out += i == cells.count - 1 ? cell : cell + String(repeating: " ", count: w - cell.count + 2)
        }
        return out
    }

    public static func scanCells(_ row: ScanRow) -> [String] {
        [row.address, row.addressType, row.name ?? "-", row.rssi.map(String.init) ?? "-",
         row.services.isEmpty ? "-" : row.services.joined(separator: ","), row.profile ?? "-", row.paired ? "yes" : "no"]
    }

    public static func bufferStats(_ r: JSONValue) -> String {
        var out = [
            "messages:            \(s(r["messages"]))",
            "bytes:               \(s(r["bytes"])) of \(s(r["max_bytes"]))",
            "oldest unsent age:   \(r["oldest_unsent_age_s"].flatMap { $0.isNull ? nil : "\(s($0)) s" } ?? "none")",
            "in flight:           \(s(r["in_flight"]))",
            "gap records pending: \(s(r["gap_records_pending"]))",
            "readings lost:       \(s(r["readings_lost"]))\(lostDetail(r["lost_by_device"]))",
            "database:            \(s(r["database"])) (\(s(r["file_bytes"])) bytes on disk)",
        ]
        if let m = r["readings_by_device"]?.objectValue, !m.isEmpty {
            out.append("readings by device:")
            out += m.map { "  \($0.key): \(s($0.value))" }
        }
        return out.joined(separator: "\n")
    }
}
