fn main() {
    println!("hello from the example source repository");
}
