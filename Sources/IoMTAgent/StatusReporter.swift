import IoMTBuffer
import IoMTCore
import IoMTUplink
import Synchronization

/// Builds the retained gateway status (`schemas/status.schema.json`): `online` with health, or
/// `offline`. Holds the little state the status needs that no other component owns (the
/// broker link as last reported), behind a mutex so the event loop and the heartbeat share it.
public final class StatusReporter: Sendable {
    public struct Document: Sendable {
        public var payload: [UInt8]
    }

    private struct LinkState {
        var broker: String?
        var error: String?
    }

    let gatewayID: String
    let version: String
    let startedAt: Timestamp
    let sources: [any ReadingSource]
    let clock: any WallClock
    private let link = Mutex(LinkState())

    public init(gatewayID: String, version: String, startedAt: Timestamp, sources: [any ReadingSource], clock: any WallClock) {
        self.gatewayID = gatewayID
        self.version = version
        self.startedAt = startedAt
        self.sources = sources
        self.clock = clock
    }

    func setBroker(_ broker: String?, error: String?) {
        link.withLock { $0 = LinkState(broker: broker, error: error) }
    }

    /// The Will (registered at start, so its `at` is the connect time) and the clean-stop message.
    public func offline(reason: String) -> [UInt8] {
        var w = JSONWriter(capacity: 160)
        w.beginObject()
        w.field("schema", "iomt-status/1")
        w.field("gateway_id", gatewayID)
        w.field("state", "offline")
        w.field("reason", reason)
        w.field("at", clock.now().rfc3339)
        w.endObject()
        return w.bytes
    }

    func online(buffer: SQLiteBuffer, ingestor: Ingestor) async -> Document {
        let stats = try? await buffer.stats()
        let lastReadings = await ingestor.lastReadingAt
        let now = clock.now()
        let state = link.withLock { $0 }
        var w = JSONWriter(capacity: 512)
        w.beginObject()
        w.field("schema", "iomt-status/1")
        w.field("gateway_id", gatewayID)
        w.field("state", "online")
        w.field("at", now.rfc3339)
        w.field("since", startedAt.rfc3339)
        w.field("version", version)
        w.field("broker", state.broker)
        w.key("buffer")
        w.beginObject()
        w.field("messages", Int64(stats?.messageCount ?? 0))
        w.field("bytes", stats?.bytes ?? 0)
        w.field("max_bytes", stats?.maxBytes ?? 0)
        w.key("oldest_unsent_age_s")
        if let oldest = stats?.oldestCreatedAt {
            w.number(Double(now.millisecondsSinceEpoch - oldest.millisecondsSinceEpoch) / 1000)
        } else {
            w.null()
        }
        w.field("error", stats == nil ? "buffer statistics unavailable" : nil)
        w.endObject()
        w.field("readings_lost", stats?.totalLost ?? 0)
        w.key("lost_by_device")
        w.beginObject()
        for (device, lost) in (stats?.lostByDevice ?? [:]).sorted(by: { $0.key < $1.key }) { w.field(device, lost) }
        w.endObject()
        w.key("devices")
        w.beginArray()
        for d in sources.flatMap(\.sourceStatuses) {
            w.beginObject()
            w.field("id", d.deviceID)
            w.field("profile", d.profile)
            w.field("transport", d.transport.rawValue)
            w.field("connected", d.connected)
            w.field("detail", d.detail)
            w.field("last_reading_at", lastReadings[d.deviceID]?.rfc3339)
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return Document(payload: w.bytes)
    }
}
