import IoMTCore

/// Event codes, Core v5.4 Vol 4 Part E 7.7.
public enum HCIEventCode {
    public static let disconnectionComplete: UInt8 = 0x05
    public static let encryptionChangeV1: UInt8 = 0x08
    public static let commandComplete: UInt8 = 0x0E
    public static let commandStatus: UInt8 = 0x0F
    public static let hardwareError: UInt8 = 0x10
    public static let numberOfCompletedPackets: UInt8 = 0x13
    public static let dataBufferOverflow: UInt8 = 0x1A
    public static let encryptionKeyRefreshComplete: UInt8 = 0x30
    public static let leMeta: UInt8 = 0x3E
    public static let encryptionChangeV2: UInt8 = 0x59
}

/// LE Meta subevent codes, Core v5.4 Vol 4 Part E 7.7.65.
public enum LESubeventCode {
    public static let connectionComplete: UInt8 = 0x01
    public static let advertisingReport: UInt8 = 0x02
    public static let connectionUpdateComplete: UInt8 = 0x03
    public static let readRemoteFeaturesComplete: UInt8 = 0x04
    public static let longTermKeyRequest: UInt8 = 0x05
    public static let remoteConnectionParameterRequest: UInt8 = 0x06
    public static let dataLengthChange: UInt8 = 0x07
    public static let enhancedConnectionCompleteV1: UInt8 = 0x0A
    public static let extendedAdvertisingReport: UInt8 = 0x0D
    public static let enhancedConnectionCompleteV2: UInt8 = 0x29
}

/// Number_Of_Completed_Packets entry, Vol 4 Part E 7.7.19.
public struct CompletedPackets: Sendable, Hashable {
    public var handle: ConnectionHandle
    public var count: UInt16
    public init(handle: ConnectionHandle, count: UInt16) { self.handle = handle; self.count = count }
}

/// LE Connection Complete (7.7.65.1) and LE Enhanced Connection Complete v1 (7.7.65.10) / v2 (7.7.65.10).
public struct LEConnectionComplete: Sendable, Hashable {
    public var status: HCIStatus
    public var handle: ConnectionHandle
    /// 0x00 Central, 0x01 Peripheral.
    public var role: UInt8
    public var peer: LEAddress
    /// Connection interval in 1.25 ms units.
    public var interval: UInt16
    public var latency: UInt16
    /// Supervision timeout in 10 ms units.
    public var supervisionTimeout: UInt16
    public var centralClockAccuracy: UInt8
    /// Enhanced forms only (all-zero means not used).
    public var localResolvablePrivateAddress: BDAddress?
    public var peerResolvablePrivateAddress: BDAddress?
    /// Enhanced v2 only.
    public var advertisingHandle: UInt8?
    public var syncHandle: UInt16?
    /// The subevent code it came from (0x01, 0x0A or 0x29).
    public var subevent: UInt8

    public var isCentral: Bool { role == 0 }

    public init(status: HCIStatus, handle: ConnectionHandle, role: UInt8, peer: LEAddress, interval: UInt16,
                latency: UInt16, supervisionTimeout: UInt16, centralClockAccuracy: UInt8 = 0,
                localResolvablePrivateAddress: BDAddress? = nil, peerResolvablePrivateAddress: BDAddress? = nil,
                advertisingHandle: UInt8? = nil, syncHandle: UInt16? = nil, subevent: UInt8 = 0x01) {
        self.status = status; self.handle = handle; self.role = role; self.peer = peer; self.interval = interval
        self.latency = latency; self.supervisionTimeout = supervisionTimeout; self.centralClockAccuracy = centralClockAccuracy
        self.localResolvablePrivateAddress = localResolvablePrivateAddress
        self.peerResolvablePrivateAddress = peerResolvablePrivateAddress
        self.advertisingHandle = advertisingHandle; self.syncHandle = syncHandle; self.subevent = subevent
    }
}

/// One advertising report, unifying LE Advertising Report (7.7.65.2) and LE Extended Advertising
/// Report (7.7.65.13).
public struct AdvertisingReport: Sendable, Hashable {
    /// Raw Event_Type: the legacy 1-octet value (0x00 ADV_IND … 0x04 SCAN_RSP) or the extended 2-octet bit field.
    public var eventType: UInt16
    /// True when the report came in a legacy LE Advertising Report (subevent 0x02).
    public var fromLegacyEvent: Bool
    public var address: LEAddress
    /// nil when the controller reports 127 (not available).
    public var rssi: Int8?
    public var data: [UInt8]
    /// Extended reports only; nil also when 127 (not available).
    public var txPower: Int8?
    /// Extended reports only: 0x01 LE 1M, 0x03 LE Coded.
    public var primaryPHY: UInt8?
    public var secondaryPHY: UInt8?
    public var advertisingSID: UInt8?
    public var periodicAdvertisingInterval: UInt16?
    public var directAddress: LEAddress?

    public init(eventType: UInt16, fromLegacyEvent: Bool, address: LEAddress, rssi: Int8?, data: [UInt8],
                txPower: Int8? = nil, primaryPHY: UInt8? = nil, secondaryPHY: UInt8? = nil,
                advertisingSID: UInt8? = nil, periodicAdvertisingInterval: UInt16? = nil, directAddress: LEAddress? = nil) {
        self.eventType = eventType; self.fromLegacyEvent = fromLegacyEvent; self.address = address
        self.rssi = rssi; self.data = data; self.txPower = txPower; self.primaryPHY = primaryPHY
        self.secondaryPHY = secondaryPHY; self.advertisingSID = advertisingSID
        self.periodicAdvertisingInterval = periodicAdvertisingInterval; self.directAddress = directAddress
    }

    /// Legacy PDU (always for subevent 0x02; bit 4 of an extended Event_Type).
    public var isLegacy: Bool { fromLegacyEvent || eventType & 0x10 != 0 }
    /// ADV_IND / ADV_DIRECT_IND; extended bit 0.
    public var isConnectable: Bool { fromLegacyEvent ? (eventType == 0x00 || eventType == 0x01) : eventType & 0x01 != 0 }
    public var isScannable: Bool { fromLegacyEvent ? (eventType == 0x00 || eventType == 0x02) : eventType & 0x02 != 0 }
    public var isDirected: Bool { fromLegacyEvent ? eventType == 0x01 : eventType & 0x04 != 0 }
    /// SCAN_RSP; extended bit 3.
    public var isScanResponse: Bool { fromLegacyEvent ? eventType == 0x04 : eventType & 0x08 != 0 }
    /// Extended Data_Status (bits 5-6): 0 complete, 1 incomplete (more reports with the rest follow;
    /// the host concatenates them, 7.7.65.13), 2 truncated.
    public var dataStatus: UInt8 { fromLegacyEvent ? 0 : UInt8((eventType >> 5) & 0x3) }
}

/// A decoded HCI event, Core v5.4 Vol 4 Part E 7.7. Unknown events and LE subevents survive as
/// `.unknown` / `.leMeta`.
public enum HCIEvent: Sendable, Hashable {
    case commandComplete(numHCICommandPackets: UInt8, opcode: HCIOpcode, returnParameters: [UInt8])
    case commandStatus(status: HCIStatus, numHCICommandPackets: UInt8, opcode: HCIOpcode)
    case disconnectionComplete(status: HCIStatus, handle: ConnectionHandle, reason: HCIStatus)
    /// v1 (0x08, keySize nil) and v2 (0x59).
    case encryptionChange(status: HCIStatus, handle: ConnectionHandle, enabled: Bool, keySize: UInt8?)
    case encryptionKeyRefreshComplete(status: HCIStatus, handle: ConnectionHandle)
    case numberOfCompletedPackets([CompletedPackets])
    case hardwareError(UInt8)
    /// Link_Type: 0x00 synchronous, 0x01 ACL.
    case dataBufferOverflow(linkType: UInt8)
    case leConnectionComplete(LEConnectionComplete)
    case leAdvertisingReports([AdvertisingReport])
    case leConnectionUpdateComplete(status: HCIStatus, handle: ConnectionHandle, interval: UInt16, latency: UInt16, supervisionTimeout: UInt16)
    case leLongTermKeyRequest(handle: ConnectionHandle, random: UInt64, ediv: UInt16)
    case leReadRemoteFeaturesComplete(status: HCIStatus, handle: ConnectionHandle, features: UInt64)
    case leDataLengthChange(handle: ConnectionHandle, maxTxOctets: UInt16, maxTxTime: UInt16, maxRxOctets: UInt16, maxRxTime: UInt16)
    case leRemoteConnectionParameterRequest(handle: ConnectionHandle, intervalMin: UInt16, intervalMax: UInt16, latency: UInt16, timeout: UInt16)
    /// An LE subevent not decoded here; `parameters` follow the Subevent_Code.
    case leMeta(subevent: UInt8, parameters: [UInt8])
    /// Any other event code, parameters untouched.
    case unknown(code: UInt8, parameters: [UInt8])

    /// Decodes one event packet's code and parameters. A known event that is too short throws,
    /// naming the event and field; unknown codes and LE subevents never throw. Trailing bytes
    /// beyond the known fields are ignored (later spec versions append fields).
    public static func decode(code: UInt8, parameters p: [UInt8]) throws(HCIDecodeError) -> HCIEvent {
        switch code {
        case HCIEventCode.commandComplete:
            return try decoding("Command Complete", p) { (r: inout ByteReader) throws(ByteReaderError) in
                let n = try r.u8("Num_HCI_Command_Packets")
                let op = HCIOpcode(rawValue: try r.u16le("Command_Opcode"))
                return .commandComplete(numHCICommandPackets: n, opcode: op, returnParameters: Array(r.bytes[r.offset...]))
            }
        case HCIEventCode.commandStatus:
            return try decoding("Command Status", p) { (r: inout ByteReader) throws(ByteReaderError) in
                .commandStatus(status: try r.status("Status"), numHCICommandPackets: try r.u8("Num_HCI_Command_Packets"),
                               opcode: HCIOpcode(rawValue: try r.u16le("Command_Opcode")))
            }
        case HCIEventCode.disconnectionComplete:
            return try decoding("Disconnection Complete", p) { (r: inout ByteReader) throws(ByteReaderError) in
                .disconnectionComplete(status: try r.status("Status"), handle: try r.handle("Connection_Handle"),
                                       reason: try r.status("Reason"))
            }
        case HCIEventCode.encryptionChangeV1, HCIEventCode.encryptionChangeV2:
            let v2 = code == HCIEventCode.encryptionChangeV2
            return try decoding(v2 ? "Encryption Change v2" : "Encryption Change", p) { (r: inout ByteReader) throws(ByteReaderError) in
                let s = try r.status("Status")
                let h = try r.handle("Connection_Handle")
                let e = try r.u8("Encryption_Enabled")
                let k: UInt8? = v2 ? try r.u8("Encryption_Key_Size") : nil
                return .encryptionChange(status: s, handle: h, enabled: e != 0, keySize: k)
            }
        case HCIEventCode.encryptionKeyRefreshComplete:
            return try decoding("Encryption Key Refresh Complete", p) { (r: inout ByteReader) throws(ByteReaderError) in
                .encryptionKeyRefreshComplete(status: try r.status("Status"), handle: try r.handle("Connection_Handle"))
            }
        case HCIEventCode.numberOfCompletedPackets:
            // Entries are (Connection_Handle, Num_Completed_Packets) pairs, as BlueZ, Zephyr and Bumble read them.
            return try decoding("Number Of Completed Packets", p) { (r: inout ByteReader) throws(ByteReaderError) in
                let n = try r.u8("Num_Handles")
                var out: [CompletedPackets] = []
                for _ in 0..<n {
                    let h = try r.handle("Connection_Handle")
                    out.append(CompletedPackets(handle: h, count: try r.u16le("Num_Completed_Packets")))
                }
                return .numberOfCompletedPackets(out)
            }
        case HCIEventCode.hardwareError:
            return try decoding("Hardware Error", p) { (r: inout ByteReader) throws(ByteReaderError) in
                .hardwareError(try r.u8("Hardware_Code"))
            }
        case HCIEventCode.dataBufferOverflow:
            return try decoding("Data Buffer Overflow", p) { (r: inout ByteReader) throws(ByteReaderError) in
                .dataBufferOverflow(linkType: try r.u8("Link_Type"))
            }
        case HCIEventCode.leMeta:
            let sub = try decoding("LE Meta", p) { (r: inout ByteReader) throws(ByteReaderError) in try r.u8("Subevent_Code") }
            return try decodeLE(sub, p)
        default:
            return .unknown(code: code, parameters: p)
        }
    }

    private static func decodeLE(_ sub: UInt8, _ p: [UInt8]) throws(HCIDecodeError) -> HCIEvent {
        switch sub {
        case LESubeventCode.connectionComplete, LESubeventCode.enhancedConnectionCompleteV1,
             LESubeventCode.enhancedConnectionCompleteV2:
            let name = sub == 0x01 ? "LE Connection Complete" : sub == 0x0A ? "LE Enhanced Connection Complete" : "LE Enhanced Connection Complete v2"
            return try decoding(name, p) { (r: inout ByteReader) throws(ByteReaderError) in
                try r.skip(1, "Subevent_Code")
                let s = try r.status("Status")
                let h = try r.handle("Connection_Handle")
                let role = try r.u8("Role")
                let pt = AddressType(rawValue: try r.u8("Peer_Address_Type"))
                let pa = try r.address("Peer_Address")
                var local: BDAddress?, peerRPA: BDAddress?
                if sub != 0x01 {
                    let l = try r.address("Local_Resolvable_Private_Address")
                    let pr = try r.address("Peer_Resolvable_Private_Address")
                    local = l.bytes.allSatisfy { $0 == 0 } ? nil : l
                    peerRPA = pr.bytes.allSatisfy { $0 == 0 } ? nil : pr
                }
                let interval = try r.u16le("Connection_Interval")
                let latency = try r.u16le("Peripheral_Latency")
                let timeout = try r.u16le("Supervision_Timeout")
                let acc = try r.u8("Central_Clock_Accuracy")
                var advHandle: UInt8?, sync: UInt16?
                if sub == 0x29 {
                    advHandle = try r.u8("Advertising_Handle")
                    sync = try r.u16le("Sync_Handle")
                }
                return .leConnectionComplete(LEConnectionComplete(
                    status: s, handle: h, role: role, peer: LEAddress(pa, type: pt), interval: interval,
                    latency: latency, supervisionTimeout: timeout, centralClockAccuracy: acc,
                    localResolvablePrivateAddress: local, peerResolvablePrivateAddress: peerRPA,
                    advertisingHandle: advHandle, syncHandle: sync, subevent: sub))
            }
        case LESubeventCode.advertisingReport:
            return try decoding("LE Advertising Report", p) { (r: inout ByteReader) throws(ByteReaderError) in
                try r.skip(1, "Subevent_Code")
                let n = try r.u8("Num_Reports")
                var out: [AdvertisingReport] = []
                for _ in 0..<n {
                    let et = try r.u8("Event_Type")
                    let at = AddressType(rawValue: try r.u8("Address_Type"))
                    let a = try r.address("Address")
                    let len = try r.u8("Data_Length")
                    let d = Array(try r.bytes(Int(len), "Data"))
                    let rssi = Int8(bitPattern: try r.u8("RSSI"))
                    out.append(AdvertisingReport(eventType: UInt16(et), fromLegacyEvent: true, address: LEAddress(a, type: at),
                                                 rssi: rssi == 127 ? nil : rssi, data: d))
                }
                return .leAdvertisingReports(out)
            }
        case LESubeventCode.extendedAdvertisingReport:
            return try decoding("LE Extended Advertising Report", p) { (r: inout ByteReader) throws(ByteReaderError) in
                try r.skip(1, "Subevent_Code")
                let n = try r.u8("Num_Reports")
                var out: [AdvertisingReport] = []
                for _ in 0..<n {
                    let et = try r.u16le("Event_Type")
                    let at = AddressType(rawValue: try r.u8("Address_Type"))
                    let a = try r.address("Address")
                    let pphy = try r.u8("Primary_PHY")
                    let sphy = try r.u8("Secondary_PHY")
                    let sid = try r.u8("Advertising_SID")
                    let tx = Int8(bitPattern: try r.u8("TX_Power"))
                    let rssi = Int8(bitPattern: try r.u8("RSSI"))
                    let pai = try r.u16le("Periodic_Advertising_Interval")
                    let dat = AddressType(rawValue: try r.u8("Direct_Address_Type"))
                    let da = try r.address("Direct_Address")
                    let len = try r.u8("Data_Length")
                    let d = Array(try r.bytes(Int(len), "Data"))
                    out.append(AdvertisingReport(
                        eventType: et, fromLegacyEvent: false, address: LEAddress(a, type: at),
                        rssi: rssi == 127 ? nil : rssi, data: d, txPower: tx == 127 ? nil : tx,
                        primaryPHY: pphy, secondaryPHY: sphy, advertisingSID: sid,
                        periodicAdvertisingInterval: pai,
                        directAddress: et & 0x04 != 0 ? LEAddress(da, type: dat) : nil))
                }
                return .leAdvertisingReports(out)
            }
        case LESubeventCode.connectionUpdateComplete:
            return try decoding("LE Connection Update Complete", p) { (r: inout ByteReader) throws(ByteReaderError) in
                try r.skip(1, "Subevent_Code")
                return .leConnectionUpdateComplete(status: try r.status("Status"), handle: try r.handle("Connection_Handle"),
                                                   interval: try r.u16le("Connection_Interval"),
                                                   latency: try r.u16le("Peripheral_Latency"),
                                                   supervisionTimeout: try r.u16le("Supervision_Timeout"))
            }
        case LESubeventCode.readRemoteFeaturesComplete:
            return try decoding("LE Read Remote Features Complete", p) { (r: inout ByteReader) throws(ByteReaderError) in
                try r.skip(1, "Subevent_Code")
                return .leReadRemoteFeaturesComplete(status: try r.status("Status"), handle: try r.handle("Connection_Handle"),
                                                     features: try r.u64le("LE_Features"))
            }
        case LESubeventCode.longTermKeyRequest:
            return try decoding("LE Long Term Key Request", p) { (r: inout ByteReader) throws(ByteReaderError) in
                try r.skip(1, "Subevent_Code")
                return .leLongTermKeyRequest(handle: try r.handle("Connection_Handle"), random: try r.u64le("Random_Number"),
                                             ediv: try r.u16le("Encrypted_Diversifier"))
            }
        case LESubeventCode.remoteConnectionParameterRequest:
            return try decoding("LE Remote Connection Parameter Request", p) { (r: inout ByteReader) throws(ByteReaderError) in
                try r.skip(1, "Subevent_Code")
                return .leRemoteConnectionParameterRequest(handle: try r.handle("Connection_Handle"),
                                                           intervalMin: try r.u16le("Interval_Min"),
                                                           intervalMax: try r.u16le("Interval_Max"),
                                                           latency: try r.u16le("Max_Latency"), timeout: try r.u16le("Timeout"))
            }
        case LESubeventCode.dataLengthChange:
            return try decoding("LE Data Length Change", p) { (r: inout ByteReader) throws(ByteReaderError) in
                try r.skip(1, "Subevent_Code")
                return .leDataLengthChange(handle: try r.handle("Connection_Handle"), maxTxOctets: try r.u16le("Max_TX_Octets"),
                                           maxTxTime: try r.u16le("Max_TX_Time"), maxRxOctets: try r.u16le("Max_RX_Octets"),
                                           maxRxTime: try r.u16le("Max_RX_Time"))
            }
        default:
            return .leMeta(subevent: sub, parameters: Array(p.dropFirst()))
        }
    }
}
