enum _IoMTBluetoothPlaceholder {}
