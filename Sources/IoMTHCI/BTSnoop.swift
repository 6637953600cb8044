/// btsnoop capture format (RFC 1761 snoop derivative, as read by Wireshark and written by Android/BlueZ
/// `btmon -w`): all fields big-endian. Datalink 1002 = HCI UART (H4): each record's data starts with
/// the H4 packet indicator.
public enum BTSnoop {
    /// "btsnoop\0", version 1, datalink type 1002 (H4).
    public static let fileHeader: [UInt8] = Array("btsnoop".utf8) + [0] + be32(1) + be32(1002)

    /// Microseconds between 0000-01-01 (the btsnoop epoch, AD) and 1970-01-01.
    public static let epochOffsetMicros: UInt64 = 0x00DC_DDB3_0F2F_8000

    /// One record: original length, included length, flags (bit 0: 0 sent / 1 received;
    /// bit 1: 1 command or event, 0 data), cumulative drops (0), timestamp (µs since 0000-01-01).
    public static func record(_ packet: HCIPacket, sent: Bool, timestampMicrosSince1970: UInt64) -> [UInt8] {
        let data = packet.h4Bytes
        var flags: UInt32 = sent ? 0 : 1
        switch packet {
        case .command, .event: flags |= 2
        default: break
        }
        let len = UInt32(truncatingIfNeeded: data.count)
        return be32(len) + be32(len) + be32(flags) + be32(0)
            + be64(timestampMicrosSince1970 &+ epochOffsetMicros) + data
    }

    static func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (24 - 8 * UInt32($0))) & 0xFF) } }
    static func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> (56 - 8 * UInt64($0))) & 0xFF) } }
}
