/// The JSON wire format (`schemas/reading.schema.json`, `schemas/gap.schema.json`).
///
/// Field order is fixed; numbers are finite; a value without a number carries `"value": null`
/// and a `"status"` saying why.
public enum WireFormat {
    public static let readingSchema = "iomt-reading/1"
    public static let gapSchema = "iomt-gap/1"

    public static func json(_ r: Reading) -> [UInt8] {
        var w = JSONWriter(capacity: 256 + r.body.observations.count * 160)
        w.beginObject()
        w.field("schema", readingSchema)
        w.field("id", r.id.description)
        w.field("gateway_id", r.gatewayID)
        w.key("device")
        w.beginObject()
        w.field("id", r.device.id)
        w.field("profile", r.device.profile)
        w.field("transport", r.device.transport.rawValue)
        w.field("serial_number", r.device.serialNumber)
        if !r.device.info.isEmpty {
            w.key("info")
            w.beginObject()
            for (k, v) in r.device.info.sorted(by: { $0.key < $1.key }) { w.field(k, v) }
            w.endObject()
        }
        w.endObject()
        w.field("patient_id", r.patientID)
        w.field("sequence", r.sequence)
        w.field("measured_at", r.body.measuredAt.rfc3339)
        w.field("received_at", r.body.receivedAt.rfc3339)
        w.field("time_quality", r.body.timeQuality.rawValue)
        if !r.body.deviceStatus.isEmpty {
            w.key("device_status")
            w.beginArray()
            for s in r.body.deviceStatus { w.string(s) }
            w.endArray()
        }
        w.key("observations")
        w.beginArray()
        for o in r.body.observations {
            w.beginObject()
            w.field("mdc_code", UInt64(o.code.rawValue))
            w.field("mdc_ref_id", o.code.referenceID)
            w.field("unit", o.unit.rawValue)
            w.field("loinc", o.loinc)
            switch o.value {
            case .numeric(let v):
                w.field("value", v)
            case .waveform(let samples, let period):
                w.field("sample_period_ms", period)
                w.key("samples")
                w.beginArray()
                for s in samples { w.number(s) }
                w.endArray()
            case .unavailable(let status):
                w.key("value"); w.null()
                w.field("status", status.rawValue)
            }
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    public static func json(_ g: GapRecord, gatewayID: String, id: ReadingID) -> [UInt8] {
        var w = JSONWriter(capacity: 320)
        w.beginObject()
        w.field("schema", gapSchema)
        w.field("id", id.description)
        w.field("gateway_id", gatewayID)
        w.field("device_id", g.deviceID)
        w.field("first_sequence", g.firstSequence)
        w.field("last_sequence", g.lastSequence)
        w.field("count", g.count)
        w.field("reason", g.reason.rawValue)
        w.field("first_lost_at", g.firstLostAt.rfc3339)
        w.field("last_lost_at", g.lastLostAt.rfc3339)
        w.endObject()
        return w.bytes
    }
}
