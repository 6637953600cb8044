import IoMTCore
import Testing

@Suite struct BluetoothDeviceIDTests {
    @Test func theSameDeviceGetsTheSameIDFromTextAndFromHCIBytes() {
        let fromText = BluetoothDeviceID.make(address: "C0:FF:EE:00:00:01")
        // HCI carries the address least significant byte first.
        let fromBytes = BluetoothDeviceID.make(littleEndianAddress: [0x01, 0x00, 0x00, 0xEE, 0xFF, 0xC0])
        #expect(fromText == "ble-c0ffee000001")
        #expect(fromBytes == fromText)
        #expect(BluetoothDeviceID.make(address: "c0-ff-ee-00-00-01") == fromText)
    }

    @Test func anIDMapsBackToItsAddressAndOtherIDsDoNot() {
        #expect(BluetoothDeviceID.address(of: "ble-c0ffee000001") == "C0:FF:EE:00:00:01")
        #expect(BluetoothDeviceID.address(of: "ble-c0ffee00000") == nil)
        #expect(BluetoothDeviceID.address(of: "ble-c0ffee00000z") == nil)
        #expect(BluetoothDeviceID.address(of: "sim-pulse-oximeter-1") == nil)
    }

    @Test func anythingButSixBytesOfHexIsNoAddress() {
        #expect(BluetoothDeviceID.make(address: "C0:FF:EE:00:00") == nil)
        #expect(BluetoothDeviceID.make(address: "C0:FF:EE:00:00:0G") == nil)
        #expect(BluetoothDeviceID.make(address: "") == nil)
    }
}
