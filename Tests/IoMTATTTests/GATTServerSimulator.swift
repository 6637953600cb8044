import IoMTHCI
@testable import IoMTATT

/// A pure GATT server over a small attribute table, answering ATT requests per Core v5.4
/// Vol 3 Part F 3.4 (the rules a real server follows: one length per list response, entries cut to
/// the MTU, Read Blob / Attribute Not Long, Insufficient Encryption on protected values).
struct GATTServerSimulator {
    struct Attribute {
        var handle: UInt16
        var type: BluetoothUUID
        var value: [UInt8]
        var needsEncryption = false
        /// For service declarations: the last handle of the group.
        var groupEnd: UInt16? = nil
    }

    var attributes: [Attribute]
    var serverMTU: UInt16 = 185
    var mtu: UInt16 = 23
    var encrypted = false
    var writes: [(UInt16, [UInt8])] = []
    var requestCount = 0

    static let customServiceUUID = BluetoothUUID(wireBytes: (0..<16).map { UInt8(0xA0 + $0) })!
    static let customLongUUID = BluetoothUUID(wireBytes: (0..<16).map { UInt8(0x10 + $0) })!
    static let longValue: [UInt8] = (0..<100).map { UInt8($0) }

    /// Heart rate 0x180D (measurement 0x2A37 notify + CCCD, body sensor location 0x2A38 read),
    /// health thermometer 0x1809 (temperature measurement 0x2A1C indicate + CCCD), and a 128-bit
    /// service with a 100-octet long characteristic and one that needs encryption.
    static func standard() -> GATTServerSimulator {
        func decl(_ h: UInt16, _ props: UInt8, _ vh: UInt16, _ uuid: BluetoothUUID) -> Attribute {
            Attribute(handle: h, type: GATTUUID.characteristic,
                      value: [props, UInt8(vh & 0xFF), UInt8(vh >> 8)] + uuid.shortestWireBytes)
        }
        return GATTServerSimulator(attributes: [
            Attribute(handle: 1, type: GATTUUID.primaryService, value: [0x0D, 0x18], groupEnd: 6),
            decl(2, 0x10, 3, BluetoothUUID(0x2A37)),
            Attribute(handle: 3, type: BluetoothUUID(0x2A37), value: [0x00, 72]),
            Attribute(handle: 4, type: GATTUUID.clientCharacteristicConfiguration, value: [0, 0]),
            decl(5, 0x02, 6, BluetoothUUID(0x2A38)),
            Attribute(handle: 6, type: BluetoothUUID(0x2A38), value: [0x01]),
            Attribute(handle: 7, type: GATTUUID.primaryService, value: [0x09, 0x18], groupEnd: 10),
            decl(8, 0x20, 9, BluetoothUUID(0x2A1C)),
            Attribute(handle: 9, type: BluetoothUUID(0x2A1C), value: [0x00, 0x6D, 0x01, 0x00, 0xFF]),
            Attribute(handle: 10, type: GATTUUID.clientCharacteristicConfiguration, value: [0, 0]),
            Attribute(handle: 11, type: GATTUUID.primaryService, value: customServiceUUID.bytes128, groupEnd: 15),
            decl(12, 0x02, 13, customLongUUID),
            Attribute(handle: 13, type: customLongUUID, value: longValue),
            decl(14, 0x0A, 15, BluetoothUUID(0x2A39)),
            Attribute(handle: 15, type: BluetoothUUID(0x2A39), value: [0x00], needsEncryption: true),
        ])
    }

    func attribute(_ h: UInt16) -> Attribute? { attributes.first { $0.handle == h } }

    private func error(_ op: UInt8, _ h: UInt16, _ e: ATTErrorCode) -> [UInt8] {
        ATTPDU.errorResponse(requestOpcode: op, handle: h, error: e).encode()
    }

    /// The response to one client PDU (nil for commands and confirmations).
    mutating func handle(_ bytes: [UInt8]) -> [UInt8]? {
        guard let pdu = try? ATTPDU.decode(bytes) else {
            return error(bytes.first ?? 0, 0, .invalidPDU)
        }
        requestCount += 1
        let m = Int(mtu)
        switch pdu {
        case .exchangeMTURequest(let client):
            mtu = max(23, min(client, serverMTU))
            return ATTPDU.exchangeMTUResponse(serverRxMTU: serverMTU).encode()

        case .readByGroupTypeRequest(let s, let e, let t):
            guard s != 0, s <= e else { return error(0x10, s, .invalidHandle) }
            guard t == GATTUUID.primaryService else { return error(0x10, s, .unsupportedGroupType) }
            var out: [ATTGroupData] = []
            for a in attributes where a.handle >= s && a.handle <= e && a.type == t {
                let v = Array(a.value.prefix(m - 6))
                if let first = out.first, first.value.count != v.count { break }
                if (out.count + 1) * (4 + v.count) > m - 2 { break }
                out.append(ATTGroupData(handle: a.handle, endGroup: a.groupEnd ?? a.handle, value: v))
            }
            return out.isEmpty ? error(0x10, s, .attributeNotFound) : ATTPDU.readByGroupTypeResponse(out).encode()

        case .findByTypeValueRequest(let s, let e, let t, let v):
            var out: [ATTHandleRange] = []
            for a in attributes where a.handle >= s && a.handle <= e && a.type == BluetoothUUID(t) && a.value == v {
                if (out.count + 1) * 4 > m - 1 { break }
                out.append(ATTHandleRange(found: a.handle, groupEnd: a.groupEnd ?? a.handle))
            }
            return out.isEmpty ? error(0x06, s, .attributeNotFound) : ATTPDU.findByTypeValueResponse(out).encode()

        case .readByTypeRequest(let s, let e, let t):
            guard s != 0, s <= e else { return error(0x08, s, .invalidHandle) }
            var out: [ATTHandleValue] = []
            for a in attributes where a.handle >= s && a.handle <= e && a.type == t {
                let v = Array(a.value.prefix(min(m - 4, 253)))
                if let first = out.first, first.value.count != v.count { break }
                if (out.count + 1) * (2 + v.count) > m - 2 { break }
                out.append(ATTHandleValue(handle: a.handle, value: v))
            }
            return out.isEmpty ? error(0x08, s, .attributeNotFound) : ATTPDU.readByTypeResponse(out).encode()

        case .findInformationRequest(let s, let e):
            guard s != 0, s <= e else { return error(0x04, s, .invalidHandle) }
            var out: [ATTHandleUUID] = []
            var format: UInt8 = 0
            for a in attributes where a.handle >= s && a.handle <= e {
                let f: UInt8 = a.type.uuid16 != nil ? 1 : 2
                if format == 0 { format = f } else if f != format { break }
                if (out.count + 1) * (f == 1 ? 4 : 18) > m - 2 { break }
                out.append(ATTHandleUUID(handle: a.handle, uuid: a.type))
            }
            return out.isEmpty ? error(0x04, s, .attributeNotFound)
                : ATTPDU.findInformationResponse(format: format, entries: out).encode()

        case .readRequest(let h):
            guard let a = attribute(h) else { return error(0x0A, h, .invalidHandle) }
            if a.needsEncryption && !encrypted { return error(0x0A, h, .insufficientEncryption) }
            return ATTPDU.readResponse(value: Array(a.value.prefix(m - 1))).encode()

        case .readBlobRequest(let h, let o):
            guard let a = attribute(h) else { return error(0x0C, h, .invalidHandle) }
            if a.needsEncryption && !encrypted { return error(0x0C, h, .insufficientEncryption) }
            if a.value.count <= m - 1 { return error(0x0C, h, .attributeNotLong) }
            guard Int(o) <= a.value.count else { return error(0x0C, h, .invalidOffset) }
            return ATTPDU.readBlobResponse(value: Array(a.value[Int(o)...].prefix(m - 1))).encode()

        case .writeRequest(let h, let v):
            guard let i = attributes.firstIndex(where: { $0.handle == h }) else { return error(0x12, h, .invalidHandle) }
            if attributes[i].needsEncryption && !encrypted { return error(0x12, h, .insufficientEncryption) }
            attributes[i].value = v
            writes.append((h, v))
            return ATTPDU.writeResponse.encode()

        case .writeCommand(let h, let v):
            if let i = attributes.firstIndex(where: { $0.handle == h }) { attributes[i].value = v }
            writes.append((h, v))
            return nil

        case .handleValueConfirmation:
            return nil

        default:
            return error(pdu.opcode, 0, .requestNotSupported)
        }
    }
}

/// Drives a client against the simulator, delivering every `.send` and collecting the rest.
struct Harness {
    var client: GATTClient
    var server: GATTServerSimulator
    var now: UInt64 = 1_000
    var completions: [UInt64: Result<GATTResult, GATTError>] = [:]
    var events: [GATTAction] = []
    var sentToServer: [[UInt8]] = []
    var nextToken: UInt64 = 1

    init(client: GATTClient = GATTClient(), server: GATTServerSimulator = .standard()) {
        self.client = client
        self.server = server
    }

    mutating func pump(_ actions: [GATTAction]) {
        var pending = actions
        while !pending.isEmpty {
            let a = pending.removeFirst()
            switch a {
            case .send(let bytes):
                sentToServer.append(bytes)
                if let rsp = server.handle(bytes) { pending += client.receive(rsp, now: now) }
            case .complete(let token, let r):
                completions[token] = r
            default:
                events.append(a)
            }
        }
    }

    mutating func run(_ p: GATTProcedure) -> Result<GATTResult, GATTError>? {
        let token = nextToken
        nextToken += 1
        pump(client.submit(p, token: token, now: now))
        return completions[token]
    }

    /// Server-originated PDU (notification / indication / request) into the client.
    mutating func fromServer(_ pdu: ATTPDU) {
        pump(client.receive(pdu.encode(), now: now))
    }
}
