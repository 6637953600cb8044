import IoMTHCI

/// A characteristic with its descriptors, as discovery found it.
public struct DiscoveredCharacteristic: Hashable, Sendable {
    public var characteristic: GATTCharacteristic
    public var descriptors: [GATTDescriptor]
    public var uuid: BluetoothUUID { characteristic.uuid }
    public var valueHandle: UInt16 { characteristic.valueHandle }
    public var properties: CharacteristicProperties { characteristic.properties }
    /// The Client Characteristic Configuration descriptor (0x2902), Vol 3 Part G 3.3.3.3.
    public var cccdHandle: UInt16? {
        descriptors.first { $0.uuid == GATTUUID.clientCharacteristicConfiguration }?.handle
    }
    public init(characteristic: GATTCharacteristic, descriptors: [GATTDescriptor]) {
        self.characteristic = characteristic
        self.descriptors = descriptors
    }
}

/// A primary service with its characteristics.
public struct DiscoveredService: Hashable, Sendable {
    public var service: GATTService
    public var characteristics: [DiscoveredCharacteristic]
    public var uuid: BluetoothUUID { service.uuid }
    public init(service: GATTService, characteristics: [DiscoveredCharacteristic]) {
        self.service = service
        self.characteristics = characteristics
    }
    public func characteristic(_ uuid: BluetoothUUID) -> DiscoveredCharacteristic? {
        characteristics.first { $0.uuid == uuid }
    }
}

/// The part of a peer's GATT database discovery looked at.
public struct GATTDatabase: Hashable, Sendable {
    public var services: [DiscoveredService]
    public init(services: [DiscoveredService]) { self.services = services }
    public func service(_ uuid: BluetoothUUID) -> DiscoveredService? { services.first { $0.uuid == uuid } }
    public func characteristic(_ uuid: BluetoothUUID, in service: BluetoothUUID) -> DiscoveredCharacteristic? {
        self.service(service)?.characteristic(uuid)
    }
    /// The Service Changed characteristic value handle (0x2A05 in 0x1801), Vol 3 Part G 7.1: pass
    /// it to `GATTClient.setServiceChangedHandle`.
    public var serviceChangedHandle: UInt16? {
        characteristic(GATTUUID.serviceChanged, in: BluetoothUUID(0x1801))?.valueHandle
    }
}

/// A pure planner for services → characteristics → descriptors (Vol 3 Part G 4.4.1, 4.6.1, 4.7.1).
///
/// The host submits each procedure it returns to its `GATTClient` and feeds the result back:
/// ```
/// var d = GATTDiscovery(wantedServices: [BluetoothUUID(0x180D)])
/// var step = d.start()
/// while case .next(let p) = step { step = d.handle(await run(p)) }
/// ```
/// The GATT service 0x1801 is always kept (for Service Changed). Descriptors are discovered for
/// characteristics that notify or indicate (where the CCCD lives), or for all when `allDescriptors`.
public struct GATTDiscovery: Sendable {
    public enum Step: Sendable, Hashable {
        case next(GATTProcedure)
        case finished(GATTDatabase)
        case failed(GATTError)
    }

    public let wantedServices: Set<BluetoothUUID>?
    public let allDescriptors: Bool
    private var services: [DiscoveredService] = []
    private var phase: Phase = .idle

    private enum Phase: Sendable {
        case idle
        case services
        case characteristics(service: Int)
        case descriptors(service: Int, characteristic: Int)
        case done
    }

    /// `wantedServices` nil discovers every primary service.
    public init(wantedServices: Set<BluetoothUUID>? = nil, allDescriptors: Bool = false) {
        self.wantedServices = wantedServices
        self.allDescriptors = allDescriptors
    }

    public mutating func start() -> Step {
        phase = .services
        return .next(.discoverPrimaryServices)
    }

    public mutating func handle(_ result: Result<GATTResult, GATTError>) -> Step {
        let value: GATTResult
        switch result {
        case .failure(let e):
            phase = .done
            return .failed(e)
        case .success(let v):
            value = v
        }
        switch (phase, value) {
        case (.services, .services(let found)):
            services = found
                .filter { wantedServices == nil || wantedServices!.contains($0.uuid) || $0.uuid == BluetoothUUID(0x1801) }
                .map { DiscoveredService(service: $0, characteristics: []) }
            return nextCharacteristics(from: 0)
        case (.characteristics(let s), .characteristics(let chars)):
            services[s].characteristics = chars.map { DiscoveredCharacteristic(characteristic: $0, descriptors: []) }
            return nextDescriptors(service: s, from: 0)
        case (.descriptors(let s, let c), .descriptors(let ds)):
            services[s].characteristics[c].descriptors = ds
            return nextDescriptors(service: s, from: c + 1)
        default:
            phase = .done
            return .failed(.unexpectedResponse(opcode: 0))
        }
    }

    private mutating func nextCharacteristics(from index: Int) -> Step {
        var s = index
        while s < services.count {
            let svc = services[s].service
            if svc.start < svc.end {
                phase = .characteristics(service: s)
                return .next(.discoverCharacteristics(start: svc.start + 1, end: svc.end))
            }
            s += 1
        }
        phase = .done
        return .finished(GATTDatabase(services: services))
    }

    private mutating func nextDescriptors(service s: Int, from index: Int) -> Step {
        let chars = services[s].characteristics
        var c = index
        while c < chars.count {
            let ch = chars[c].characteristic
            let wants = allDescriptors || !ch.properties.intersection([.notify, .indicate]).isEmpty
            // Descriptors sit after the value handle, up to the next declaration or the service end.
            let end = c + 1 < chars.count ? chars[c + 1].characteristic.declarationHandle &- 1 : services[s].service.end
            if wants, ch.valueHandle < 0xFFFF, ch.valueHandle + 1 <= end {
                phase = .descriptors(service: s, characteristic: c)
                return .next(.discoverDescriptors(start: ch.valueHandle + 1, end: end))
            }
            c += 1
        }
        return nextCharacteristics(from: s + 1)
    }
}
