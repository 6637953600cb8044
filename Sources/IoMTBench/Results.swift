#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import IoMTCore

/// One line of the results table: the agent's figure, the baseline's (same run), their ratio.
public struct ResultRow: Sendable {
    public var section: String
    public var metric: String
    public var unit: String
    public var agent: Double
    public var baseline: Double?
    public var baselineName: String?
    /// agent / baseline (for "higher is better" metrics) as printed.
    public var ratio: Double? {
        guard let b = baseline, b != 0, agent.isFinite, b.isFinite else { return nil }
        return agent / b
    }
    public var repetitions: Int
    public var note: String
}

public final class Results {
    public private(set) var rows: [ResultRow] = []
    public private(set) var notes: [String] = []
    public var machine: [(String, String)] = []
    public var mode = "full"

    func add(_ section: String, _ metric: String, unit: String, agent: Double, baseline: Double? = nil,
             baselineName: String? = nil, reps: Int, note: String = "") {
        let row = ResultRow(section: section, metric: metric, unit: unit, agent: agent, baseline: baseline,
                            baselineName: baselineName, repetitions: reps, note: note)
        rows.append(row)
        print("  " + Results.line(row))
        fflush(nil) // progress is visible also when stdout is a file or a pipe
    }

    func note(_ text: String) {
        notes.append(text)
        print("  note: " + text)
        fflush(nil)
    }

    static func fmt(_ v: Double) -> String {
        guard v.isFinite else { return "n/a" }
        if v == v.rounded() && abs(v) < 1e12 { return String(Int64(v)) }
        if abs(v) >= 100 { return String(Int64(v.rounded())) }
        let scaled = (v * 100).rounded() / 100
        return "\(scaled)"
    }

    static func line(_ r: ResultRow) -> String {
        var s = "\(r.metric): agent \(fmt(r.agent)) \(r.unit)"
        if let b = r.baseline { s += ", \(r.baselineName ?? "baseline") \(fmt(b)) \(r.unit)" }
        if let q = r.ratio { s += ", ratio \(fmt(q))" }
        s += " (n=\(r.repetitions))"
        if !r.note.isEmpty { s += " — \(r.note)" }
        return s
    }

    /// Markdown table.
    public func table() -> String {
        var out = "| # | Metric | Agent | Baseline | Baseline value | Ratio agent/baseline | Reps | Note |\n"
        out += "|---|---|---|---|---|---|---|---|\n"
        for r in rows {
            let b = r.baseline.map { "\(Results.fmt($0)) \(r.unit)" } ?? "—"
            let q = r.ratio.map { Results.fmt($0) } ?? "—"
            out += "| \(r.section) | \(r.metric) | \(Results.fmt(r.agent)) \(r.unit) | \(r.baselineName ?? "—") | \(b) | \(q) | \(r.repetitions) | \(r.note) |\n"
        }
        return out
    }

    public func json() -> String {
        var w = JSONWriter(capacity: 8192)
        w.beginObject()
        w.field("mode", mode)
        w.key("machine")
        w.beginObject()
        for (k, v) in machine { w.field(k, v) }
        w.endObject()
        w.key("rows")
        w.beginArray()
        for r in rows {
            w.beginObject()
            w.field("section", r.section)
            w.field("metric", r.metric)
            w.field("unit", r.unit)
            if r.agent.isFinite { w.field("agent", r.agent) } else { w.key("agent"); w.null() }
            if let b = r.baseline, b.isFinite { w.field("baseline", b) } else { w.key("baseline"); w.null() }
            w.field("baseline_name", r.baselineName)
            if let q = r.ratio { w.field("ratio", q) } else { w.key("ratio"); w.null() }
            w.field("repetitions", Int64(r.repetitions))
            w.field("note", r.note)
            w.endObject()
        }
        w.endArray()
        w.key("notes")
        w.beginArray()
        for n in notes { w.string(n) }
        w.endArray()
        w.endObject()
        return String(decoding: w.bytes, as: UTF8.self) + "\n"
    }
}
