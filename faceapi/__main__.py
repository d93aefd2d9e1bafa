from faceapi.entrypoints.cli import main

main()
