from faceapi.cli import main

main()
