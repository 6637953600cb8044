import IoMTCore

/// An HCI command packet, Core v5.4 Vol 4 Part E 5.4.1: opcode and parameters (at most 255 octets).
public struct HCICommand: Sendable, Hashable, CustomStringConvertible {
    public var opcode: HCIOpcode
    public var parameters: [UInt8]

    public init(opcode: HCIOpcode, parameters: [UInt8] = []) {
        self.opcode = opcode
        self.parameters = parameters
    }

    /// Opcode (LE), Parameter_Total_Length, parameters (without the H4 indicator).
    public var encoded: [UInt8] {
        [UInt8(opcode.rawValue & 0xFF), UInt8(opcode.rawValue >> 8), UInt8(truncatingIfNeeded: parameters.count)]
            + parameters
    }

    public var description: String { "\(opcode.name) \(parameters.count) byte(s)" }
}

/// Little-endian parameter writer.
struct ParamWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes += [UInt8(v & 0xFF), UInt8(v >> 8)] }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8((v >> (8 * UInt64(i))) & 0xFF)) } }
    mutating func raw(_ b: [UInt8]) { bytes += b }
    mutating func handle(_ h: ConnectionHandle) { u16(h.rawValue) }
}

extension HCICommand {
    private static func make(_ op: HCIOpcode, _ body: (inout ParamWriter) -> Void = { _ in }) -> HCICommand {
        var w = ParamWriter()
        body(&w)
        return HCICommand(opcode: op, parameters: w.bytes)
    }

    /// HCI_Reset, Vol 4 Part E 7.3.2: no parameters.
    public static var reset: HCICommand { make(.reset) }

    /// HCI_Set_Event_Mask, Vol 4 Part E 7.3.1: Event_Mask (8 octets).
    public static func setEventMask(_ mask: UInt64) -> HCICommand { make(.setEventMask) { $0.u64(mask) } }

    /// HCI_LE_Set_Event_Mask, Vol 4 Part E 7.8.1: LE_Event_Mask (8 octets).
    public static func leSetEventMask(_ mask: UInt64) -> HCICommand { make(.leSetEventMask) { $0.u64(mask) } }

    /// HCI_Read_Local_Version_Information, Vol 4 Part E 7.4.1.
    public static var readLocalVersionInformation: HCICommand { make(.readLocalVersionInformation) }

    /// HCI_Read_BD_ADDR, Vol 4 Part E 7.4.6.
    public static var readBDADDR: HCICommand { make(.readBDADDR) }

    /// HCI_Read_Buffer_Size, Vol 4 Part E 7.4.5.
    public static var readBufferSize: HCICommand { make(.readBufferSize) }

    /// HCI_LE_Read_Buffer_Size [v1], Vol 4 Part E 7.8.2.
    public static var leReadBufferSize: HCICommand { make(.leReadBufferSize) }

    /// HCI_LE_Read_Buffer_Size [v2], Vol 4 Part E 7.8.2.
    public static var leReadBufferSizeV2: HCICommand { make(.leReadBufferSizeV2) }

    /// HCI_LE_Read_Local_Supported_Features, Vol 4 Part E 7.8.3.
    public static var leReadLocalSupportedFeatures: HCICommand { make(.leReadLocalSupportedFeatures) }

    /// HCI_LE_Set_Random_Address, Vol 4 Part E 7.8.4: Random_Address (6 octets).
    public static func leSetRandomAddress(_ address: BDAddress) -> HCICommand {
        make(.leSetRandomAddress) { $0.raw(address.bytes) }
    }

    /// HCI_LE_Set_Scan_Parameters, Vol 4 Part E 7.8.10: LE_Scan_Type, LE_Scan_Interval, LE_Scan_Window
    /// (0.625 ms slots), Own_Address_Type, Scanning_Filter_Policy.
    public static func leSetScanParameters(active: Bool, intervalSlots: UInt16, windowSlots: UInt16,
                                           ownAddressType: AddressType, filterPolicy: UInt8 = 0) -> HCICommand {
        make(.leSetScanParameters) {
            $0.u8(active ? 1 : 0); $0.u16(intervalSlots); $0.u16(windowSlots)
            $0.u8(ownAddressType.rawValue); $0.u8(filterPolicy)
        }
    }

    /// HCI_LE_Set_Scan_Enable, Vol 4 Part E 7.8.11: LE_Scan_Enable, Filter_Duplicates.
    public static func leSetScanEnable(_ on: Bool, filterDuplicates: Bool) -> HCICommand {
        make(.leSetScanEnable) { $0.u8(on ? 1 : 0); $0.u8(filterDuplicates ? 1 : 0) }
    }

    /// One PHY's scan settings for HCI_LE_Set_Extended_Scan_Parameters.
    public struct ExtendedScanPHY: Sendable, Hashable {
        public var active: Bool
        public var intervalSlots: UInt16
        public var windowSlots: UInt16
        public init(active: Bool, intervalSlots: UInt16, windowSlots: UInt16) {
            self.active = active; self.intervalSlots = intervalSlots; self.windowSlots = windowSlots
        }
    }

    /// HCI_LE_Set_Extended_Scan_Parameters, Vol 4 Part E 7.8.64: Own_Address_Type, Scanning_Filter_Policy,
    /// Scanning_PHYs (bit 0 LE 1M, bit 2 LE Coded), then Scan_Type, Scan_Interval, Scan_Window per PHY set.
    public static func leSetExtendedScanParameters(ownAddressType: AddressType, filterPolicy: UInt8 = 0,
                                                   le1M: ExtendedScanPHY?, leCoded: ExtendedScanPHY? = nil) -> HCICommand {
        make(.leSetExtendedScanParameters) { w in
            w.u8(ownAddressType.rawValue); w.u8(filterPolicy)
            w.u8((le1M != nil ? 0x01 : 0) | (leCoded != nil ? 0x04 : 0))
            for p in [le1M, leCoded].compactMap({ $0 }) {
                w.u8(p.active ? 1 : 0); w.u16(p.intervalSlots); w.u16(p.windowSlots)
            }
        }
    }

    /// HCI_LE_Set_Extended_Scan_Enable, Vol 4 Part E 7.8.65: Enable, Filter_Duplicates,
    /// Duration (10 ms units, 0 = until disabled), Period (1.28 s units, 0 = continuous).
    public static func leSetExtendedScanEnable(_ on: Bool, filterDuplicates: Bool,
                                               duration10ms: UInt16 = 0, period1280ms: UInt16 = 0) -> HCICommand {
        make(.leSetExtendedScanEnable) {
            $0.u8(on ? 1 : 0); $0.u8(filterDuplicates ? 1 : 0); $0.u16(duration10ms); $0.u16(period1280ms)
        }
    }

    /// HCI_LE_Create_Connection, Vol 4 Part E 7.8.12: LE_Scan_Interval, LE_Scan_Window,
    /// Initiator_Filter_Policy (0: use the peer address), Peer_Address_Type, Peer_Address,
    /// Own_Address_Type, Connection_Interval_Min/Max (1.25 ms), Max_Latency, Supervision_Timeout (10 ms),
    /// Min/Max_CE_Length (0.625 ms).
    public static func leCreateConnection(peer: LEAddress, ownAddressType: AddressType,
                                          scanIntervalSlots: UInt16 = 0x0060, scanWindowSlots: UInt16 = 0x0060,
                                          connIntervalMin: UInt16 = 0x0018, connIntervalMax: UInt16 = 0x0028,
                                          maxLatency: UInt16 = 0, supervisionTimeout10ms: UInt16 = 0x01F4,
                                          minCELength: UInt16 = 0, maxCELength: UInt16 = 0) -> HCICommand {
        make(.leCreateConnection) { w in
            w.u16(scanIntervalSlots); w.u16(scanWindowSlots); w.u8(0)
            w.u8(peer.type.rawValue); w.raw(peer.address.bytes); w.u8(ownAddressType.rawValue)
            w.u16(connIntervalMin); w.u16(connIntervalMax); w.u16(maxLatency); w.u16(supervisionTimeout10ms)
            w.u16(minCELength); w.u16(maxCELength)
        }
    }

    /// HCI_LE_Create_Connection_Cancel, Vol 4 Part E 7.8.13.
    public static var leCreateConnectionCancel: HCICommand { make(.leCreateConnectionCancel) }

    /// HCI_Disconnect, Vol 4 Part E 7.1.6: Connection_Handle, Reason.
    public static func disconnect(_ handle: ConnectionHandle, reason: HCIStatus = .remoteUserTerminated) -> HCICommand {
        make(.disconnect) { $0.handle(handle); $0.u8(reason.rawValue) }
    }

    /// HCI_LE_Enable_Encryption, Vol 4 Part E 7.8.24: Connection_Handle, Random_Number (8), Encrypted_Diversifier (2),
    /// Long_Term_Key (16, LSB first as on the wire). For LE Secure Connections Random and EDIV are 0.
    /// An LTK of the wrong length is zero-padded/truncated to 16 octets (the caller owns key lengths).
    public static func leEnableEncryption(_ handle: ConnectionHandle, random: UInt64, ediv: UInt16, ltk: [UInt8]) -> HCICommand {
        make(.leEnableEncryption) { $0.handle(handle); $0.u64(random); $0.u16(ediv); $0.raw(key16(ltk)) }
    }

    /// HCI_LE_Long_Term_Key_Request_Reply, Vol 4 Part E 7.8.25: Connection_Handle, Long_Term_Key (16, LSB first).
    public static func leLongTermKeyRequestReply(_ handle: ConnectionHandle, ltk: [UInt8]) -> HCICommand {
        make(.leLongTermKeyRequestReply) { $0.handle(handle); $0.raw(key16(ltk)) }
    }

    /// HCI_LE_Long_Term_Key_Request_Negative_Reply, Vol 4 Part E 7.8.26: Connection_Handle.
    public static func leLongTermKeyRequestNegativeReply(_ handle: ConnectionHandle) -> HCICommand {
        make(.leLongTermKeyRequestNegativeReply) { $0.handle(handle) }
    }

    /// HCI_LE_Connection_Update, Vol 4 Part E 7.8.18: Connection_Handle, Connection_Interval_Min/Max,
    /// Max_Latency, Supervision_Timeout, Min/Max_CE_Length.
    public static func leConnectionUpdate(_ handle: ConnectionHandle, intervalMin: UInt16, intervalMax: UInt16,
                                          latency: UInt16, supervisionTimeout10ms: UInt16,
                                          minCELength: UInt16 = 0, maxCELength: UInt16 = 0) -> HCICommand {
        make(.leConnectionUpdate) {
            $0.handle(handle); $0.u16(intervalMin); $0.u16(intervalMax); $0.u16(latency)
            $0.u16(supervisionTimeout10ms); $0.u16(minCELength); $0.u16(maxCELength)
        }
    }

    /// HCI_LE_Remote_Connection_Parameter_Request_Reply, Vol 4 Part E 7.8.31.
    public static func leRemoteConnectionParameterRequestReply(_ handle: ConnectionHandle, intervalMin: UInt16,
                                                               intervalMax: UInt16, latency: UInt16,
                                                               supervisionTimeout10ms: UInt16,
                                                               minCELength: UInt16 = 0, maxCELength: UInt16 = 0) -> HCICommand {
        make(.leRemoteConnectionParameterRequestReply) {
            $0.handle(handle); $0.u16(intervalMin); $0.u16(intervalMax); $0.u16(latency)
            $0.u16(supervisionTimeout10ms); $0.u16(minCELength); $0.u16(maxCELength)
        }
    }

    /// HCI_LE_Remote_Connection_Parameter_Request_Negative_Reply, Vol 4 Part E 7.8.32: Connection_Handle, Reason.
    public static func leRemoteConnectionParameterRequestNegativeReply(_ handle: ConnectionHandle,
                                                                       reason: HCIStatus = .unacceptableConnectionParameters) -> HCICommand {
        make(.leRemoteConnectionParameterRequestNegativeReply) { $0.handle(handle); $0.u8(reason.rawValue) }
    }

    /// HCI_LE_Read_Remote_Features, Vol 4 Part E 7.8.21: Connection_Handle.
    public static func leReadRemoteFeatures(_ handle: ConnectionHandle) -> HCICommand {
        make(.leReadRemoteFeatures) { $0.handle(handle) }
    }

    /// HCI_Write_LE_Host_Support, Vol 4 Part E 7.3.79, with LE_Supported_Host = 1.
    public static var writeLEHostSupport: HCICommand { writeLEHostSupport(supported: true) }

    /// HCI_Write_LE_Host_Support, Vol 4 Part E 7.3.79: LE_Supported_Host, Unused (shall be 0).
    public static func writeLEHostSupport(supported: Bool) -> HCICommand {
        make(.writeLEHostSupport) { $0.u8(supported ? 1 : 0); $0.u8(0) }
    }

    /// HCI_LE_Set_Data_Length, Vol 4 Part E 7.8.33: Connection_Handle, TX_Octets, TX_Time.
    public static func leSetDataLength(_ handle: ConnectionHandle, txOctets: UInt16, txTime: UInt16) -> HCICommand {
        make(.leSetDataLength) { $0.handle(handle); $0.u16(txOctets); $0.u16(txTime) }
    }

    private static func key16(_ k: [UInt8]) -> [UInt8] {
        k.count == 16 ? k : Array((k + [UInt8](repeating: 0, count: 16)).prefix(16))
    }
}

/// A command's return parameters or an event could not be decoded: names the packet and the field.
public struct HCIDecodeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The event or command the bytes belonged to, e.g. `LE Extended Advertising Report`.
    public var packet: String
    public var underlying: ByteReaderError
    public init(packet: String, underlying: ByteReaderError) { self.packet = packet; self.underlying = underlying }
    public var description: String { "\(packet): \(underlying)" }
}

func decoding<T>(_ what: String, _ bytes: [UInt8], _ body: (inout ByteReader) throws(ByteReaderError) -> T) throws(HCIDecodeError) -> T {
    var r = ByteReader(bytes)
    do { return try body(&r) } catch { throw HCIDecodeError(packet: what, underlying: error) }
}

extension ByteReader {
    mutating func u64le(_ field: StaticString) throws(ByteReaderError) -> UInt64 {
        let b = try bytes(8, field)
        var v: UInt64 = 0
        for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
        return v
    }
    mutating func address(_ field: StaticString) throws(ByteReaderError) -> BDAddress {
        let b = try bytes(6, field)
        return BDAddress(padding: b)
    }
    mutating func handle(_ field: StaticString) throws(ByteReaderError) -> ConnectionHandle {
        ConnectionHandle(rawValue: try u16le(field))
    }
    mutating func status(_ field: StaticString) throws(ByteReaderError) -> HCIStatus {
        HCIStatus(rawValue: try u8(field))
    }
}

/// Return parameters of HCI_Read_Local_Version_Information, Vol 4 Part E 7.4.1.
/// Check the status first (`CommandOutcome.commandStatus`): an error return carries only the status.
public struct LocalVersionInformation: Sendable, Hashable {
    public var status: HCIStatus
    public var hciVersion: UInt8
    public var hciSubversion: UInt16
    public var lmpVersion: UInt8
    public var companyIdentifier: UInt16
    public var lmpSubversion: UInt16

    public static func decode(_ returnParameters: [UInt8]) throws(HCIDecodeError) -> LocalVersionInformation {
        try decoding("HCI_Read_Local_Version_Information return", returnParameters) { (r: inout ByteReader) throws(ByteReaderError) in
            LocalVersionInformation(status: try r.status("Status"), hciVersion: try r.u8("HCI_Version"),
                                    hciSubversion: try r.u16le("HCI_Subversion"), lmpVersion: try r.u8("LMP_Version"),
                                    companyIdentifier: try r.u16le("Company_Identifier"),
                                    lmpSubversion: try r.u16le("LMP_Subversion"))
        }
    }
}

/// Return parameters of HCI_Read_BD_ADDR, Vol 4 Part E 7.4.6.
public struct ReadBDADDRResult: Sendable, Hashable {
    public var status: HCIStatus
    public var address: BDAddress

    public static func decode(_ returnParameters: [UInt8]) throws(HCIDecodeError) -> ReadBDADDRResult {
        try decoding("HCI_Read_BD_ADDR return", returnParameters) { (r: inout ByteReader) throws(ByteReaderError) in
            ReadBDADDRResult(status: try r.status("Status"), address: try r.address("BD_ADDR"))
        }
    }
}

/// Return parameters of HCI_LE_Read_Local_Supported_Features, Vol 4 Part E 7.8.3.
public struct LESupportedFeatures: Sendable, Hashable {
    public var status: HCIStatus
    /// LE_Features bit mask, Vol 6 Part B 4.6.
    public var features: UInt64

    public static func decode(_ returnParameters: [UInt8]) throws(HCIDecodeError) -> LESupportedFeatures {
        try decoding("HCI_LE_Read_Local_Supported_Features return", returnParameters) { (r: inout ByteReader) throws(ByteReaderError) in
            LESupportedFeatures(status: try r.status("Status"), features: try r.u64le("LE_Features"))
        }
    }
}

/// Controller data buffers, one type for HCI_Read_Buffer_Size (Vol 4 Part E 7.4.5) and
/// HCI_LE_Read_Buffer_Size v1/v2 (7.8.2).
///
/// Per 7.8.2, an LE_ACL_Data_Packet_Length or Total_Num_LE_ACL_Data_Packets of 0 means the
/// controller has no separate LE buffers: LE data uses the BR/EDR buffers that
/// HCI_Read_Buffer_Size reports. `resolved(bredr:)` applies that rule.
public struct BufferSize: Sendable, Hashable {
    public var status: HCIStatus
    /// From LE Read Buffer Size; from Read Buffer Size this is ACL_Data_Packet_Length.
    public var leACLDataPacketLength: Int
    /// From LE Read Buffer Size; from Read Buffer Size this is Total_Num_ACL_Data_Packets.
    public var totalNumLEACLDataPackets: Int
    /// v2 only, else 0.
    public var isoDataPacketLength: Int = 0
    public var totalNumISODataPackets: Int = 0

    public init(status: HCIStatus = .success, leACLDataPacketLength: Int, totalNumLEACLDataPackets: Int,
                isoDataPacketLength: Int = 0, totalNumISODataPackets: Int = 0) {
        self.status = status
        self.leACLDataPacketLength = leACLDataPacketLength
        self.totalNumLEACLDataPackets = totalNumLEACLDataPackets
        self.isoDataPacketLength = isoDataPacketLength
        self.totalNumISODataPackets = totalNumISODataPackets
    }

    /// True when the LE values are 0: use HCI_Read_Buffer_Size's values (7.8.2).
    public var sharesBREDRBuffers: Bool { leACLDataPacketLength == 0 || totalNumLEACLDataPackets == 0 }

    /// These LE values, or `bredr`'s when the controller reported 0 (Vol 4 Part E 7.8.2).
    public func resolved(bredr: BufferSize) -> BufferSize {
        guard sharesBREDRBuffers else { return self }
        var b = self
        b.leACLDataPacketLength = bredr.leACLDataPacketLength
        b.totalNumLEACLDataPackets = bredr.totalNumLEACLDataPackets
        return b
    }

    /// HCI_Read_Buffer_Size return: Status, ACL_Data_Packet_Length (2), Synchronous_Data_Packet_Length (1),
    /// Total_Num_ACL_Data_Packets (2), Total_Num_Synchronous_Data_Packets (2).
    public static func decodeReadBufferSize(_ rp: [UInt8]) throws(HCIDecodeError) -> BufferSize {
        try decoding("HCI_Read_Buffer_Size return", rp) { (r: inout ByteReader) throws(ByteReaderError) in
            let s = try r.status("Status")
            let len = try r.u16le("ACL_Data_Packet_Length")
            _ = try r.u8("Synchronous_Data_Packet_Length")
            let n = try r.u16le("Total_Num_ACL_Data_Packets")
            _ = try r.u16le("Total_Num_Synchronous_Data_Packets")
            return BufferSize(status: s, leACLDataPacketLength: Int(len), totalNumLEACLDataPackets: Int(n))
        }
    }

    /// HCI_LE_Read_Buffer_Size [v1] return: Status, LE_ACL_Data_Packet_Length (2), Total_Num_LE_ACL_Data_Packets (1).
    public static func decodeLEReadBufferSize(_ rp: [UInt8]) throws(HCIDecodeError) -> BufferSize {
        try decoding("HCI_LE_Read_Buffer_Size return", rp) { (r: inout ByteReader) throws(ByteReaderError) in
            let s = try r.status("Status")
            let len = try r.u16le("LE_ACL_Data_Packet_Length")
            let n = try r.u8("Total_Num_LE_ACL_Data_Packets")
            return BufferSize(status: s, leACLDataPacketLength: Int(len), totalNumLEACLDataPackets: Int(n))
        }
    }

    /// HCI_LE_Read_Buffer_Size [v2] return: v1 fields, then ISO_Data_Packet_Length (2), Total_Num_ISO_Data_Packets (1).
    public static func decodeLEReadBufferSizeV2(_ rp: [UInt8]) throws(HCIDecodeError) -> BufferSize {
        try decoding("HCI_LE_Read_Buffer_Size_v2 return", rp) { (r: inout ByteReader) throws(ByteReaderError) in
            let s = try r.status("Status")
            let len = try r.u16le("LE_ACL_Data_Packet_Length")
            let n = try r.u8("Total_Num_LE_ACL_Data_Packets")
            let il = try r.u16le("ISO_Data_Packet_Length")
            let inum = try r.u8("Total_Num_ISO_Data_Packets")
            return BufferSize(status: s, leACLDataPacketLength: Int(len), totalNumLEACLDataPackets: Int(n),
                              isoDataPacketLength: Int(il), totalNumISODataPackets: Int(inum))
        }
    }
}
