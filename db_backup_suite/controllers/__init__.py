from . import emergency, main, upload
