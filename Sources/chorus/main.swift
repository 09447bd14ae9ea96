print("chorus")
