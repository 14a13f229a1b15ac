from . import emergency, main, rpc, upload
